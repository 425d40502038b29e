// swift-tools-version:6.0
// Engine and store benchmarks, in their own package so the main build stays light.
// Run through bench/engine.sh (release build, several runs, medians).
import PackageDescription

let package = Package(
    name: "authz-engine-bench",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "authz-sidecar", path: "../.."),
    ],
    targets: [
        .executableTarget(
            name: "engine-bench",
            dependencies: [
                .product(name: "AuthzEngine", package: "authz-sidecar"),
                .product(name: "AuthzDocument", package: "authz-sidecar"),
                .product(name: "AuthzStore", package: "authz-sidecar"),
                .product(name: "AuthzWorkloads", package: "authz-sidecar"),
                .product(name: "CAllocCounter", package: "authz-sidecar"),
            ],
            swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"])]
        ),
    ],
    swiftLanguageModes: [.v6]
)
