import Foundation
import LockClient
import LockProtocol
import Testing

/// A process that only waits, to own locks by pid.
func sleeper() throws -> Process {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/sleep")
    process.arguments = ["60"]
    try process.run()
    return process
}

@Suite("state across restarts", .serialized)
struct PersistenceTests {
    @Test(
        "after kill -9 of lockd: pid and token holds come back, session holds and expired leases do not, fences go on")
    func crashRestart() throws {
        let daemon = try Daemon()
        let owner = try sleeper()
        defer { kill(owner.processIdentifier, SIGKILL) }
        let client = try daemon.connect()
        let pidHold = try client.acquire(
            "by-pid", [("owner", .object([("pid", .int(Int64(owner.processIdentifier)))]))])
        let tokenHold = try client.acquire("by-token", [("owner", .object([("token", "keep"), ("ttl", 60)]))])
        #expect(try client.acquire("by-token", [("owner", .object([("token", "keep"), ("ttl", 60)]))])["count"] == 2)
        #expect(try client.acquire("short", [("owner", .object([("token", "brief"), ("ttl", .double(0.3))]))]).isOK)
        #expect(
            try client.ask(
                "shield",
                [("lock", "by-pid"), ("owner", .object([("pid", .int(Int64(owner.processIdentifier)))])), ("on", true)]
            ).isOK)
        var lastFence: Int64 = 0
        for index in 0..<20 {
            let grant = try client.acquire("session-\(index)")
            lastFence = max(lastFence, grant["fence"]?.intValue ?? 0)
        }

        daemon.crash()
        usleep(500_000)
        try daemon.restart()

        let after = try daemon.connect()
        let pidHolders = try after.holders("by-pid")
        #expect(pidHolders.count == 1)
        #expect(pidHolders.first?["pid"]?.intValue == Int64(owner.processIdentifier))
        #expect(pidHolders.first?["fence"] == pidHold["fence"])
        #expect(pidHolders.first?["shielded"] == 1, "the shield is kept too")
        let tokenHolders = try after.holders("by-token")
        #expect(tokenHolders.first?["count"] == 2 && tokenHolders.first?["fence"] == tokenHold["fence"])
        #expect(try after.holders("short").isEmpty, "the lease ran out while lockd was down")
        #expect(try after.holders("session-0").isEmpty, "session holds die with their connections")
        let next = try after.acquire("fresh")["fence"]?.intValue ?? 0
        #expect(next > lastFence, "fences never go back: \(next) after \(lastFence)")
        #expect(daemon.log.contains("state restored"), "\(daemon.log)")

        #expect(try after.acquire("by-token", [("owner", .object([("token", "keep"), ("ttl", 60)]))])["count"] == 3)
        #expect(
            try after.ask("release", [("lock", "by-token"), ("owner", .object([("token", "keep")])), ("all", true)])
                .isOK)
        kill(owner.processIdentifier, SIGKILL)
        #expect(eventually { (try? after.holders("by-pid").isEmpty) == true }, "the restored pid owner is watched")
        daemon.crash()
        try daemon.restart()
        let third = try daemon.connect()
        #expect(try third.holders("by-pid").isEmpty && third.holders("by-token").isEmpty, "releases were durable too")
    }

    @Test("a pid owner that dies while lockd is down loses its hold; a graceful stop keeps durable holds")
    func ownerDiesWhileDown() throws {
        let daemon = try Daemon()
        let dies = try sleeper()
        let lives = try sleeper()
        defer { kill(lives.processIdentifier, SIGKILL) }
        let client = try daemon.connect()
        #expect(try client.acquire("dies", [("owner", .object([("pid", .int(Int64(dies.processIdentifier)))]))]).isOK)
        #expect(try client.acquire("lives", [("owner", .object([("pid", .int(Int64(lives.processIdentifier)))]))]).isOK)
        #expect(daemon.stop(signal: SIGTERM) == 0)
        kill(dies.processIdentifier, SIGKILL)
        dies.waitUntilExit()
        try daemon.restart()
        let after = try daemon.connect()
        #expect(try after.holders("dies").isEmpty)
        #expect(try after.holders("lives").count == 1)
        #expect(daemon.log.contains("the process exited"), "\(daemon.log)")
    }

    @Test("a torn last record is cut and the rest restored; a second lockd on the same state is refused")
    func tornJournal() throws {
        let daemon = try Daemon()
        let client = try daemon.connect()
        #expect(try client.acquire("kept", [("owner", .object([("token", "k"), ("ttl", 60)]))]).isOK)
        let second = try execute(
            Binaries.lockd, ["--config", daemon.configPath, "--socket", daemon.directory + "/second.sock"], timeout: 10)
        #expect(second.status == 1)
        #expect(second.stderr.contains("another lockd uses the state directory"), "\(second.stderr)")

        daemon.crash()
        let journal = daemon.stateDirectory + "/lockd.journal"
        let handle = try #require(FileHandle(forWritingAtPath: journal))
        handle.seekToEndOfFile()
        handle.write(Data("{\"lock\":\"ghost\",\"holds\":[{\"owner\":{\"tok".utf8))
        handle.closeFile()
        try daemon.restart()
        let after = try daemon.connect()
        #expect(try after.holders("kept").count == 1)
        #expect(try after.holders("ghost").isEmpty)
        #expect(daemon.log.contains("torn record"), "\(daemon.log)")
        let text = try String(contentsOfFile: journal, encoding: .utf8)
        #expect(!text.contains("ghost"), "the torn end was cut")
    }

    @Test("absurd leases and waits from a client: lockd answers, status reads them, and a restart restores them")
    func absurdNumbers() throws {
        let daemon = try Daemon()
        #expect(try daemon.lockctl("acquire", "evil", "--token", "evil", "--ttl", "1e16").status == 0)
        #expect(try daemon.lockctl("renew", "--token", "evil", "--ttl", "1e300").status == 0)
        let client = try daemon.connect()
        for ttl: JSONValue in [.double(1.7976931348623157e308), .double(.leastNonzeroMagnitude), .double(1e18), 1] {
            #expect(try client.acquire("max", [("owner", .object([("token", "m"), ("ttl", ttl)]))]).isOK)
        }
        #expect(try client.acquire("held").isOK)
        let other = try daemon.connect()
        _ = try other.send(op: "acquire", [("lock", "held"), ("wait", .double(1e300))])
        let status = try daemon.lockctl("status", "--since")
        #expect(status.status == 0, "\(status.stderr)")
        #expect(status.stdout.contains("evil") && status.stdout.contains("21"), "\(status.stdout)")

        daemon.crash()
        try daemon.restart()
        let after = try daemon.connect()
        let holders = try after.holders("evil")
        #expect(holders.count == 1)
        let expires = holders.first?["expires"]?.string ?? ""
        #expect(expires.hasPrefix("21"), "a century from now at most: \(expires)")
        #expect(try daemon.lockctl("status", "--json").status == 0)
    }
}
