// swift-tools-version:6.0
// The lookups benchmark (issue 10), in its own package so the main build stays light.
// Run through bench/lookups.sh (release build, several runs, medians).
import PackageDescription

let package = Package(
    name: "authz-lookups-bench",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "authz-sidecar", path: "../.."),
    ],
    targets: [
        .executableTarget(
            name: "lookups-bench",
            dependencies: [
                .product(name: "AuthzEngine", package: "authz-sidecar"),
                .product(name: "AuthzStore", package: "authz-sidecar"),
                .product(name: "AuthzWire", package: "authz-sidecar"),
                .product(name: "AuthzWorkloads", package: "authz-sidecar"),
                .product(name: "CAllocCounter", package: "authz-sidecar"),
            ],
            swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"])]
        ),
    ],
    swiftLanguageModes: [.v6]
)
