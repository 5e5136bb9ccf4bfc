// swift-tools-version:6.1
import PackageDescription

let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "lockd",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "LockCore", targets: ["LockCore"]),
        .library(name: "LockProtocol", targets: ["LockProtocol"]),
        .library(name: "LockClient", targets: ["LockClient"]),
        .library(name: "AsyncLockClient", targets: ["AsyncLockClient"]),
        .executable(name: "lockd", targets: ["lockd"]),
        .executable(name: "lockctl", targets: ["lockctl"]),
        .executable(name: "lockctl-full", targets: ["lockctl-full"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.8.1"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
        .package(url: "https://github.com/swift-extras/swift-extras-base64.git", from: "1.2.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        // `swift package generate-documentation` for the DocC catalogs of LockCore and AsyncLockClient.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        // Thin C helpers for Linux calls Swift cannot make directly (variadic syscall/prctl,
        // fork+exec with async-signal-safe setup, the glibc-hidden ucred layout).
        .target(name: "CLockSupport"),
        // sd_notify, sd_listen_fds and sd_journal_sendv from Debian's libsystemd-dev.
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),
        // The current task's address without a retain/release pair (ReentrantAsyncLock's owner).
        .target(name: "CTaskIdentity"),
        .target(
            name: "LockCore",
            dependencies: ["CTaskIdentity", .product(name: "DequeModule", package: "swift-collections")],
            swiftSettings: strictSettings
        ),
        .target(name: "LockProtocol", dependencies: ["LockCore"], swiftSettings: strictSettings),
        .target(
            name: "LockClient",
            dependencies: ["LockProtocol", "LockCore", "CLockSupport"],
            swiftSettings: strictSettings
        ),
        // LockdClient: lockd locks held for the length of a closure, over SwiftNIO (a target of
        // its own so that lockctl does not link NIO).
        .target(
            name: "AsyncLockClient",
            dependencies: [
                "LockClient", "LockProtocol", "LockCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        // etcd's v3 API over its JSON gateway (HTTP/1.1 on NIO), and lockd's lock recipe on it
        // (docs/cluster.md).
        .target(
            name: "LockCluster",
            dependencies: [
                "LockCore", "LockProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "ExtrasBase64", package: "swift-extras-base64"),
            ],
            swiftSettings: strictSettings
        ),
        // Starts a real etcd cluster on free loopback ports, for the tests and the benchmark.
        .target(name: "EtcdLauncher", swiftSettings: strictSettings),
        // The daemon's parts (connections, persistence, owner watching, systemd, configuration)
        // and the request dispatch over them; `lockd` is only its command line.
        .target(
            name: "LockServer",
            dependencies: [
                "LockCore", "LockProtocol", "LockClient", "LockCluster", "CLockSupport", "CSystemd",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "lockd",
            dependencies: [
                "LockServer", "LockProtocol", "LockCluster",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // The whole-service fuzzer: random request sequences through the real dispatch, checked
        // after every step (docs/fuzzing.md).
        .executableTarget(
            name: "lockd-fuzz",
            dependencies: ["LockServer", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strictSettings
        ),
        // lockctl's commands as plain values, QuickParse, and what runs them: shared by the lean
        // `lockctl` (no argument-parser, for the lines scripts repeat) and `lockctl-full`.
        .target(
            name: "LockctlCore",
            dependencies: ["LockClient", "LockProtocol", "LockCore", "CLockSupport"],
            swiftSettings: strictSettings
        ),
        .executableTarget(name: "lockctl", dependencies: ["LockctlCore"], swiftSettings: strictSettings),
        // The argument-parser command line: help, errors, completions, every command, lflock.
        .executableTarget(
            name: "lockctl-full",
            dependencies: [
                "LockctlCore", "LockClient", "LockProtocol", "LockCore", "CLockSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "lockd-bench",
            dependencies: [
                "LockClient", "LockProtocol", "CLockSupport", "LockCluster", "EtcdLauncher",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ExtrasBase64", package: "swift-extras-base64"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSettings
        ),
        // A small program that uses the in-process lock and the daemon (docs/swift.md).
        .executableTarget(
            name: "lockd-example",
            dependencies: ["LockCore", "AsyncLockClient"],
            path: "Examples/inventory",
            swiftSettings: strictSettings
        ),
        // LockCore's primitives against the seed's Python ones, and LockdClient against
        // LockConnection (scripts/bench-lockcore).
        .executableTarget(
            name: "lockcore-bench",
            dependencies: [
                "LockCore", "LockClient", "AsyncLockClient", "LockProtocol",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "lockd-stress",
            dependencies: [
                "LockClient", "LockProtocol", "LockCore", "EtcdLauncher",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(name: "LockCoreTests", dependencies: ["LockCore"]),
        .testTarget(name: "LockProtocolTests", dependencies: ["LockProtocol"]),
        .testTarget(
            name: "LockServerTests",
            dependencies: [
                "LockServer", "LockCluster", .product(name: "NIOTestUtils", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "LockdTests",
            dependencies: [
                "LockClient", "AsyncLockClient", "LockProtocol", "LockCluster", "EtcdLauncher", "CLockSupport", "lockd",
                "lockctl", "lockctl-full", "LockctlCore",
                "lockd-stress", "lockd-fuzz", .product(name: "NIOPosix", package: "swift-nio"),
            ],
            exclude: ["pty-session.py"]
        ),
    ]
)
