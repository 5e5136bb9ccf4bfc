import Foundation
import LockClient
import LockProtocol
import Testing

@Suite("configuration file and reload", .serialized)
struct ConfigurationTests {
    @Test("a bad file stops lockd at start with exit 78, naming the file, the line and the key")
    func badFiles() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let cases: [(String, String)] = [
            ("[socket]\nmode = 0o660\n\n[limits]\nmax_clients = \"many\"\n", "bad.toml:5: limits.max_clients: must be"),
            ("[limits]\nmax_clients = 10\nmax_wiat = 5\n", "bad.toml:3: limits.max_wiat: unknown key"),
            ("[log]\nlevel = \"loud\"\n", "bad.toml:2: log.level: unknown level \"loud\""),
            ("# comment\n[shutdown]\ngrace = -1\n", "bad.toml:3: shutdown.grace: must be"),
            ("[socket]\npath = \"relative.sock\"\n", "bad.toml:2: socket.path: must be an absolute path"),
            ("[sockets]\npath = \"/x\"\n", "bad.toml:1: sockets: unknown section"),
            ("[limits]\nmax_clients = [\n", "bad.toml:2:"),
        ]
        let file = directory + "/bad.toml"
        for (text, expected) in cases {
            try text.write(toFile: file, atomically: true, encoding: .utf8)
            let run = try execute(
                Binaries.lockd,
                ["--config", file, "--socket", directory + "/s.sock", "--state-dir", directory + "/state"],
                timeout: 10)
            #expect(run.status == 78, "\(text)")
            #expect(run.stderr.contains(expected), "\(run.stderr) should contain \(expected)")
        }
        let missing = try execute(
            Binaries.lockd, ["--config", directory + "/none.toml", "--state-dir", directory + "/state"], timeout: 10)
        #expect(missing.status == 78)
        #expect(missing.stderr.contains("none.toml: No such file or directory"), "\(missing.stderr)")
    }

    @Test("the shipped config/lockd.toml is valid and spells out the defaults")
    func shippedFile() throws {
        let shipped = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
            "../../config/lockd.toml"
        ).standardized.path
        let daemon = try Daemon(config: try String(contentsOfFile: shipped, encoding: .utf8))
        #expect(try daemon.connect().ask("ping").isOK)
        #expect(daemon.stop() == 0)
    }

    @Test("command-line options override the file; the file's socket is used without one")
    func precedence() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let fromFile = directory + "/from-file.sock"
        let daemon = try Daemon(
            arguments: ["--shutdown-grace", "0"], config: "[socket]\npath = \"\(fromFile)\"\n[shutdown]\ngrace = 60\n")
        #expect(try daemon.connect().ask("ping").isOK, "--socket beats socket.path")
        #expect(!FileManager.default.fileExists(atPath: fromFile))
        _ = try daemon.connect().ask("shield", [("lock", "x"), ("on", true)])

        let (fileOnly, _) = try spawn(
            Binaries.lockd, ["--config", daemon.configPath, "--state-dir", directory + "/state"],
            environment: ["LOCKD_SOCKET": ""])
        defer { kill(fileOnly.processIdentifier, SIGKILL) }
        #expect(eventually { (try? LockConnection(path: fromFile).ask("ping").isOK) == true }, "socket.path is used")
        kill(fileOnly.processIdentifier, SIGTERM)
        #expect(waitExit(fileOnly) == 0)
    }

    @Test("SIGHUP changes the log level and logs what changed; a bad file at reload keeps the configuration")
    func reloadLogLevel() throws {
        let daemon = try Daemon(config: "[log]\nlevel = \"notice\"\n")
        let client = try daemon.connect()
        #expect(try client.acquire("quiet").isOK)
        #expect(!daemon.log.contains("granted"), "debug records are off at notice")

        try "[log]\nlevel = \"debug\"\n".write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        kill(daemon.process.processIdentifier, SIGHUP)
        #expect(
            eventually { daemon.log.contains("configuration changed: log.level: notice -> debug") }, "\(daemon.log)")
        #expect(try client.acquire("loud").isOK)
        #expect(eventually { daemon.log.contains("lock_name=loud") && daemon.log.contains("granted") }, "\(daemon.log)")

        try "[log]\nlevel = \"notice\"\nmystery = 1\n".write(
            toFile: daemon.configPath, atomically: true, encoding: .utf8)
        kill(daemon.process.processIdentifier, SIGHUP)
        #expect(eventually { daemon.log.contains("reload failed") }, "\(daemon.log)")
        #expect(daemon.log.contains("lockd.toml:3: log.mystery: unknown key"), "\(daemon.log)")
        #expect(try client.acquire("still-loud").isOK)
        #expect(eventually { daemon.log.contains("lock_name=still-loud") }, "the old level (debug) stays")
        #expect(daemon.process.isRunning)
    }

    @Test("limits: max_clients refuses one more with a limit error, max_line_bytes, max_wait; a reload changes them")
    func limits() throws {
        let daemon = try Daemon(config: "[limits]\nmax_clients = 2\nmax_line_bytes = 1024\nmax_wait = 0.3\n")
        let first = try daemon.connect()
        // The harness's start-up probe may not be closed on lockd's side yet: retry until served.
        var served: LockConnection?
        #expect(
            eventually {
                served = try? daemon.connect(); return (try? served?.ask("ping").isOK) == true
            })
        let second = try #require(served)
        let third = try daemon.connect()
        let refusal = try #require(try third.next(timeout: 5))
        #expect(refusal.code == "limit", "\(refusal)")
        #expect(throws: ClientError.self) { _ = try third.call(op: "ping", timeout: 2) }
        #expect(try first.ask("ping").isOK && second.ask("ping").isOK, "the others are untouched")
        // A client looping on connect gets each refusal, but the log gets one line per 10 s.
        for _ in 0..<20 {
            let refused = try daemon.connect()
            #expect(try refused.next(timeout: 5)?.code == "limit")
        }
        let refusalLines = daemon.log.split(separator: "\n").filter { $0.contains("refused connections") }
        #expect(refusalLines.count == 1, "\(refusalLines)")

        #expect(try first.acquire("w").isOK)
        let start = Date()
        #expect(try second.acquire("w", [("wait", 30)]).code == "timeout", "max_wait shortens a long wait")
        #expect(Date().timeIntervalSince(start) < 3)

        let long = "{\"op\":\"ping\",\"pad\":\"" + String(repeating: "x", count: 1500) + "\"}"
        try second.sendRaw(Array((long + "\n").utf8))
        #expect(try second.next()?.code == "too_large")

        try "[limits]\nmax_clients = 3\nmax_line_bytes = 4096\n".write(
            toFile: daemon.configPath, atomically: true, encoding: .utf8)
        kill(daemon.process.processIdentifier, SIGHUP)
        #expect(eventually { daemon.log.contains("limits.max_clients: 2 -> 3") }, "\(daemon.log)")
        let again = try daemon.connect()
        let later = try daemon.connect()
        #expect(try again.ask("ping").isOK && later.ask("ping").isOK, "three clients are allowed now")
        try again.sendRaw(Array((long + "\n").utf8))
        let answer = try #require(try again.next())
        #expect(answer.code != "too_large", "a 1.5 KiB line fits the new limit: \(answer)")
        #expect(try again.ask("ping").isOK, "and the connection stays")
    }

    @Test("limits.default_ttl lets a token acquire omit ttl; max_ttl shortens leases")
    func leases() throws {
        let plain = try Daemon()
        #expect(try plain.connect().acquire("t", [("owner", .object([("token", "a")]))]).code == "invalid")

        let daemon = try Daemon(config: "[limits]\ndefault_ttl = 30\nmax_ttl = 60\n")
        let client = try daemon.connect()
        #expect(try client.acquire("t", [("owner", .object([("token", "a")]))]).isOK)
        let renewed = try client.ask("renew", [("token", "a"), ("ttl", 3600)])
        let parser = ISO8601DateFormatter()
        parser.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let expires = try #require(renewed["expires"]?.string.flatMap(parser.date(from:)))
        let left = expires.timeIntervalSinceNow
        #expect(left > 55 && left <= 61, "renew for an hour is held to max_ttl (60 s): \(left)")
    }
}
