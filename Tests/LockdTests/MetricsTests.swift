import Foundation
import LockClient
import LockProtocol
import Testing

@Suite("metrics: lockctl metrics and the opt-in HTTP listener, against a real lockd", .serialized)
struct MetricsTests {
    /// The value of one sample line (`name{labels} value`) in an exposition.
    private func value(_ sample: String, in text: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(sample + " ") {
            return Double(line.dropFirst(sample.count + 1))
        }
        return nil
    }

    /// `GET path` over the Unix socket at `socket`, as a scraper sends it; the whole response.
    private func httpGet(_ path: String, socket: String) throws -> String {
        let connection = try LockConnection(path: socket)
        try connection.sendRaw(Array("GET \(path) HTTP/1.1\r\nHost: lockd\r\nConnection: close\r\n\r\n".utf8))
        var response: [UInt8] = []
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline {
            var chunk = [UInt8](repeating: 0, count: 65536)
            let count = read(connection.fd, &chunk, chunk.count)
            if count <= 0 { break }
            response += chunk[..<count]
        }
        return String(decoding: response, as: UTF8.self)
    }

    @Test("values move as locks do; lockctl metrics and GET /metrics give the same exposition")
    func valuesMove() throws {
        let metricsSocket =
            FileManager.default.temporaryDirectory.appendingPathComponent(
                "lockd-metrics-\(UUID().uuidString.prefix(8)).sock"
            )
            .path
        let daemon = try Daemon(config: "[metrics]\nlisten = \"\(metricsSocket)\"\n")
        let before = try daemon.lockctl("metrics").stdout
        #expect(value("lockd_grants_total", in: before) == 0)
        #expect(value("lockd_locks_held", in: before) == 0)

        let holder = try daemon.connect()
        _ = try holder.acquire("m")
        let waiter = try daemon.connect()
        let waiting = try waiter.send(op: "acquire", [("lock", "m")])
        #expect(try waiter.ask("acquire", [("lock", "m"), ("wait", 0)]).code == "busy")
        let held = try daemon.lockctl("metrics").stdout
        #expect(value("lockd_grants_total", in: held) == 1)
        #expect(value("lockd_locks_held", in: held) == 1)
        #expect(value("lockd_waiters", in: held) == 1)
        #expect(value("lockd_errors_total{code=\"busy\"}", in: held) == 1)

        _ = try holder.ask("release", [("lock", "m")])
        #expect(try waiter.answer(to: waiting, timeout: 5).isOK)
        #expect(try daemon.lockctl("break", "m").status == 0)
        let after = try httpGet("/metrics", socket: metricsSocket)
        #expect(after.hasPrefix("HTTP/1.1 200 OK"))
        #expect(after.contains("Content-Type: text/plain; version=0.0.4"))
        let body = String(after[after.range(of: "\r\n\r\n")!.upperBound...])
        #expect(value("lockd_grants_total", in: body) == 2)
        #expect(value("lockd_releases_total", in: body) == 1)
        #expect(value("lockd_waiters", in: body) == 0)
        #expect(value("lockd_wait_seconds_count", in: body) == 1)
        #expect(value("lockd_handoff_seconds_count", in: body) == 1)
        #expect(value("lockd_revocations_total{reason=\"break\"}", in: body) == 1)
        #expect(value("lockd_connections", in: body) ?? 0 >= 2)

        #expect(try httpGet("/other", socket: metricsSocket).hasPrefix("HTTP/1.1 404"))
        // lockd stopped: the metrics socket is gone with it.
        #expect(daemon.stop() == 0)
        #expect(!FileManager.default.fileExists(atPath: metricsSocket))
    }

    @Test("a listen address beyond loopback is refused at start, with the key named")
    func loopbackOnly() throws {
        let daemon = try Daemon(config: "[metrics]\nlisten = \"0.0.0.0:9464\"\n", waitForSocket: false)
        #expect(waitExit(daemon.process, timeout: 10) != nil)
        #expect(daemon.log.contains("metrics.listen"))
    }
}
