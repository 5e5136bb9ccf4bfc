// swift-tools-version:6.1
import Foundation
import PackageDescription

// A path dependency is named after its directory, which is whatever the clone is called.
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().lastPathComponent

// libFuzzer targets, kept out of the main package: they only link with -sanitize=fuzzer.
// Run them with Fuzz/run (see docs/fuzzing.md).
let package = Package(
    name: "lockd-fuzz",
    dependencies: [.package(path: "..")],
    targets: [
        .executableTarget(
            name: "RequestFuzzer",
            dependencies: [.product(name: "LockProtocol", package: root)],
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        )
    ]
)
