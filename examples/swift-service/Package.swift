// swift-tools-version:6.0
// A service that asks the sidecar, depending on this repository by URL and version as any
// Swift service would. `build.sh` (run by the test command) resolves that URL to a clone of
// the current commit tagged with the version, through a SwiftPM mirror, so the build proves
// that the `AuthzClient` product can be used this way (SwiftPM refuses a package depended on
// by version whose products' targets carry `unsafeFlags`).
import PackageDescription

let package = Package(
    name: "swift-service",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(url: "https://github.com/authz-sidecar/authz-sidecar.git", from: "0.1.0"),
    ],
    targets: [
        .executableTarget(
            name: "swift-service",
            dependencies: [
                .product(name: "AuthzClient", package: "authz-sidecar"),
                .product(name: "AuthzEngine", package: "authz-sidecar"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
