import AsyncLockClient
import Foundation
import LockClient
import LockCore
import LockProtocol

/// One lockd, two clients in turn: the blocking LockConnection's acquire+release and
/// LockdClient's withLock (acquire, empty body, release), median microseconds per pair.
func measureClient(lockd: String, rounds: Int, seconds: Double) async throws -> Figures {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lockcore-bench-\(getpid())").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let socket = directory + "/lockd.sock"
    let server = Process()
    server.executableURL = URL(fileURLWithPath: lockd)
    server.arguments = ["--socket", socket, "--state-dir", directory + "/state", "--log-level", "warning"]
    try server.run()
    defer {
        server.terminate()
        server.waitUntilExit()
    }
    var blocking: LockConnection?
    for _ in 0..<500 where blocking == nil {
        blocking = try? LockConnection(path: socket)
        if blocking == nil { try await Task.sleep(for: .milliseconds(10)) }
    }
    guard let blocking else { throw CocoaError(.fileNoSuchFile) }
    let client = LockdClient(socketPath: socket)
    let name = LockName("bench")!
    var blockingSamples: [Double] = []
    var asyncSamples: [Double] = []
    for _ in 0..<rounds {
        blockingSamples.append(
            try await pairs(seconds: seconds) {
                _ = try blocking.call(.acquire(lock: name, mode: .exclusive, wait: nil, owner: .session))
                _ = try blocking.call(.release(lock: name, owner: .session, all: false))
            })
        asyncSamples.append(try await pairs(seconds: seconds) { try await client.withLock("bench") { _ in } })
    }
    await client.close()
    return ["blocking_pair_us": median(blockingSamples), "async_withlock_us": median(asyncSamples)]
}

private func pairs(seconds: Double, _ pair: () async throws -> Void) async throws -> Double {
    for _ in 0..<200 { try await pair() }
    var count = 0
    let start = nanoseconds()
    let end = start + UInt64(seconds * 1e9)
    while nanoseconds() < end {
        try await pair()
        count += 1
    }
    return Double(nanoseconds() - start) / 1000 / Double(count)
}
