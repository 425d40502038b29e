// swift-tools-version:6.0
// libFuzzer targets for the request path, in their own package so the main build stays
// light. Built and run by scripts/fuzz.sh (release, -sanitize=fuzzer,address); see
// fuzz/README.md.
import PackageDescription

/// The fuzz targets: `fuzz-NAME` is built from `Sources/fuzz-NAME/` and defines
/// `LLVMFuzzerTestOneInput`; its seed corpus is `corpus/NAME/`. `uses` lists the main
/// package's libraries it needs beyond AuthzEngine and AuthzWire. Adding a target: one file
/// in `Sources/fuzz-NAME/`, one line here (and its library as a product of the main package).
let fuzzTargets: [(name: String, uses: [String])] = [
    ("frame", []),
    ("request", ["AuthzWorkloads"]),
    ("connection", ["ConnectionModel"]),
]

let mainPackage = "authz-sidecar"

let package = Package(
    name: "authz-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: mainPackage, path: ".."),
    ],
    targets: [
        .target(
            name: "FuzzSupport",
            dependencies: [
                .product(name: "AuthzEngine", package: mainPackage),
                .product(name: "AuthzWire", package: mainPackage),
            ]
        ),
    ]
        + fuzzTargets.map { target in
            .executableTarget(
                name: "fuzz-\(target.name)",
                dependencies: ["FuzzSupport"]
                    + (["AuthzEngine", "AuthzWire"] + target.uses).map { .product(name: $0, package: mainPackage) },
                // No `main`: libFuzzer's driver is the program's entry point.
                swiftSettings: [.unsafeFlags(["-parse-as-library"])]
            )
        },
    swiftLanguageModes: [.v6]
)
