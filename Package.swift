// swift-tools-version:6.0
import PackageDescription

// Module map (each arrow is "depends on"):
//
//   authzd ──► AuthzServer ──► AuthzConnection ──► AuthzWire ──► CAuthzProto ──► CProtobufC (system libprotobuf-c)
//                  │                                      │
//                  │                                      └──► AuthzEngine
//                  └──► AuthzStore ──► AuthzDocument ──► AuthzEngine
//                           └──► CSQLite (system libsqlite3)
//   authzctl ──► AuthzStore, AuthzQuery, AuthzClient (──► AuthzWire), AuthzWorkloads
//
// AuthzEngine is the pure decision engine: no I/O, no Foundation, no NIO, no SQLite.
// AuthzDocument (the JSON workspace document) and AuthzQuery (the JSON Lines queries) are
// pure as well. AuthzWire is the wire format without NIO. AuthzConnection is the protocol
// of one connection as a value type (no I/O); AuthzServer's two transports only move bytes
// through it. AuthzStore owns the SQLite schema, migrations, import/export and the snapshot
// loader. Executables stay thin.

let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

/// No target uses `unsafeFlags`: SwiftPM refuses them in a package that is depended on by
/// version, and `AuthzClient` is meant to be one (examples/swift-service). The request
/// path's hot class properties opt out of Swift's dynamic exclusivity checks one by one with
/// `@exclusivity(unchecked)` instead of `-enforce-exclusivity=unchecked` on whole modules
/// (those checks cost ~5% of the server's CPU per request; bench/RESULTS.md).
let requestPathSettings: [SwiftSetting] = strictSettings

let package = Package(
    name: "authz-sidecar",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "authzctl", targets: ["authzctl"]),
        // The Swift client of the sidecar, for services (examples/swift-service).
        .library(name: "AuthzClient", targets: ["AuthzClient"]),
        // Libraries for the benchmark packages in bench/ and the fuzzers in fuzz/ (path
        // dependencies).
        .library(name: "AuthzEngine", targets: ["AuthzEngine"]),
        .library(name: "AuthzWire", targets: ["AuthzWire"]),
        .library(name: "AuthzDocument", targets: ["AuthzDocument"]),
        .library(name: "AuthzStore", targets: ["AuthzStore"]),
        .library(name: "AuthzWorkloads", targets: ["AuthzWorkloads"]),
        .library(name: "CAllocCounter", targets: ["CAllocCounter"]),
        .library(name: "ConnectionModel", targets: ["ConnectionModel"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.81.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.12.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        .target(
            name: "AuthzEngine",
            swiftSettings: requestPathSettings
        ),
        .target(
            name: "AuthzDocument",
            dependencies: ["AuthzEngine"],
            swiftSettings: strictSettings
        ),
        .target(
            name: "AuthzWorkloads",
            dependencies: ["AuthzEngine"],
            swiftSettings: strictSettings
        ),
        .target(
            name: "AuthzQuery",
            dependencies: ["AuthzEngine", "AuthzDocument"],
            swiftSettings: strictSettings
        ),
        .systemLibrary(
            name: "CSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        .target(
            name: "AuthzStore",
            dependencies: ["AuthzEngine", "AuthzDocument", "CSQLite"],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "authzctl",
            dependencies: [
                "AuthzEngine", "AuthzDocument", "AuthzQuery", "AuthzStore", "AuthzWorkloads", "AuthzClient", "AuthzWire",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSettings
        ),
        // The wire protocol (proto/authz/v1/authz.proto): framing and the protobuf-c codec.
        .systemLibrary(
            name: "CProtobufC",
            pkgConfig: "libprotobuf-c",
            providers: [.apt(["libprotobuf-c-dev"])]
        ),
        .target(name: "CAuthzProto", dependencies: ["CProtobufC"]),
        .target(
            name: "AuthzWire",
            dependencies: ["AuthzEngine", "CAuthzProto", "CProtobufC"],
            swiftSettings: requestPathSettings
        ),
        .testTarget(
            name: "AuthzWireTests",
            dependencies: ["AuthzEngine", "AuthzWire", "AuthzWorkloads", "CAllocCounter", "CAuthzProto", "CProtobufC", "WireTestSupport"],
            swiftSettings: strictSettings
        ),
        // The protocol of one connection as a value (sans I/O): what to answer, when to
        // stop reading, when to close. Both transports move bytes through it.
        .target(
            name: "AuthzConnection",
            dependencies: ["AuthzWire"],
            swiftSettings: requestPathSettings
        ),
        .testTarget(
            name: "AuthzConnectionTests",
            dependencies: ["AuthzConnection", "AuthzWire", "AuthzWorkloads", "ConnectionModel"],
            swiftSettings: strictSettings
        ),
        // The connection core's model check, shared by its tests and its fuzz target.
        .target(
            name: "ConnectionModel",
            dependencies: ["AuthzConnection", "AuthzWire"],
            path: "Tests/ConnectionModel",
            swiftSettings: strictSettings
        ),
        // The sidecar server: SwiftNIO on a Unix domain socket, run as a ServiceLifecycle
        // service; its async client; the daemon.
        // Linux system calls for the epoll transport that Glibc's Swift module lacks.
        .target(name: "CEpoll"),
        .target(
            name: "AuthzServer",
            dependencies: [
                "CEpoll",
                "AuthzConnection", "AuthzEngine", "AuthzStore", "AuthzWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: requestPathSettings
        ),
        .target(
            name: "AuthzClient",
            dependencies: [
                "AuthzEngine", "AuthzQuery", "AuthzWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "authzd",
            dependencies: [
                "AuthzServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "AuthzServerTests",
            dependencies: [
                "AuthzClient", "AuthzDocument", "AuthzEngine", "AuthzQuery", "AuthzServer", "AuthzStore",
                "AuthzWire", "AuthzWorkloads", "ConformanceSupport", "SQLiteTestSupport", "WireTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        // Test support: counts heap allocations per thread (malloc interposer).
        .target(name: "CAllocCounter", path: "Tests/CAllocCounter"),
        .testTarget(
            name: "AuthzEngineTests",
            dependencies: ["AuthzEngine", "AuthzWorkloads", "CAllocCounter"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "AuthzDocumentTests",
            dependencies: ["AuthzEngine", "AuthzDocument"],
            swiftSettings: strictSettings
        ),
        .target(
            name: "WireTestSupport",
            dependencies: ["AuthzWire"],
            path: "Tests/WireTestSupport",
            swiftSettings: strictSettings
        ),
        .target(
            name: "SQLiteTestSupport",
            dependencies: ["CSQLite"],
            path: "Tests/SQLiteTestSupport",
            swiftSettings: strictSettings
        ),
        .target(
            name: "ConformanceSupport",
            dependencies: ["AuthzDocument", "AuthzEngine", "AuthzQuery"],
            path: "Tests/ConformanceSupport",
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "AuthzStoreTests",
            dependencies: ["AuthzEngine", "AuthzDocument", "AuthzQuery", "AuthzStore", "AuthzWorkloads", "ConformanceSupport", "SQLiteTestSupport"],
            swiftSettings: strictSettings
        ),
    ],
    swiftLanguageModes: [.v6]
)
