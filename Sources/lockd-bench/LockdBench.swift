import Foundation
import LockClient
import LockProtocol

/// A first, small benchmark: one client, pipelining off, against a lockd it starts itself from
/// the same build directory. Prints the median ping round trip (the floor through lockd's own
/// stack), the median acquire+release pair with the pairs per second, and the same pair for a
/// token owner, whose every change goes through the state journal and fdatasync.
@main
struct LockdBench {
    static func main() throws {
        let arguments = CommandLine.arguments
        let iterations = arguments.count > 1 ? Int(arguments[1]) ?? 20000 : 20000
        let binDir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lockd-bench-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let socket = dir + "/lockd.sock"
        let daemon = Process()
        daemon.executableURL = URL(fileURLWithPath: binDir + "/lockd")
        // Its own state directory, next to the socket: the durable pair below measures the
        // journal's fdatasync on the file system of $TMPDIR.
        daemon.arguments = [
            "--socket", socket, "--config", "/dev/null", "--state-dir", dir + "/state", "--log-level", "warning",
        ]
        try daemon.run()
        defer {
            daemon.terminate()
            daemon.waitUntilExit()
        }
        var connection: LockConnection?
        for _ in 0..<500 where connection == nil {
            connection = try? LockConnection(path: socket)
            if connection == nil { usleep(10_000) }
        }
        guard let client = connection else { fatalError("lockd did not start at \(socket)") }

        func measure(_ body: () throws -> Void) rethrows -> (median: Double, perSecond: Double) {
            var samples: [Double] = []
            samples.reserveCapacity(iterations)
            for _ in 0..<(iterations / 10) { try body() }  // warm-up
            let start = LockConnection.monotonicSeconds()
            for _ in 0..<iterations {
                let before = LockConnection.monotonicSeconds()
                try body()
                samples.append(LockConnection.monotonicSeconds() - before)
            }
            let total = LockConnection.monotonicSeconds() - start
            samples.sort()
            return (samples[samples.count / 2], Double(iterations) / total)
        }

        let ping = try measure { _ = try client.call(op: "ping") }
        let pair = try measure {
            _ = try client.call(op: "acquire", [("lock", "bench")])
            _ = try client.call(op: "release", [("lock", "bench")])
        }
        let token: JSONValue = .object([("token", "bench"), ("ttl", 60)])
        let durable = try measure {
            _ = try client.call(op: "acquire", [("lock", "durable"), ("owner", token)])
            _ = try client.call(op: "release", [("lock", "durable"), ("owner", token)])
        }
        print("iterations: \(iterations)")
        print(String(format: "ping round trip: median %.1f us, %.0f/s", ping.median * 1e6, ping.perSecond))
        print(
            String(
                format: "acquire+release pair: median %.1f us, %.0f pairs/s, %.2fx two ping round trips",
                pair.median * 1e6, pair.perSecond, pair.median / (2 * ping.median)))
        print(
            String(
                format:
                    "durable (token) pair, journaled and synced: median %.1f us, %.0f pairs/s, %.2fx the session pair",
                durable.median * 1e6, durable.perSecond, durable.median / pair.median))
    }
}
