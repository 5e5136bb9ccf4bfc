import Foundation
import LockClient
import LockProtocol
import Testing

@Suite("lockd start and stop", .serialized)
struct DaemonLifecycleTests {
    @Test("a second lockd on the same path refuses to start; a stale socket file is replaced")
    func refusedAndStale() throws {
        let daemon = try Daemon()
        // Own state directories: root's default, /var/lib/lockd, is the machine's.
        func state(_ name: String) -> [String] {
            ["--config", "/dev/null", "--state-dir", daemon.directory + "/" + name]
        }
        let second = try execute(Binaries.lockd, ["--socket", daemon.socket] + state("second"), timeout: 10)
        #expect(second.status != 0)
        #expect(second.stderr.contains("another lockd"))

        let notSocket = daemon.directory + "/plain"
        _ = FileManager.default.createFile(atPath: notSocket, contents: Data("x".utf8))
        let refused = try execute(Binaries.lockd, ["--socket", notSocket] + state("refused"), timeout: 10)
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("not a socket"))

        // SIGKILL leaves the socket file behind; the next lockd removes it and serves.
        kill(daemon.process.processIdentifier, SIGKILL)
        daemon.process.waitUntilExit()
        #expect(FileManager.default.fileExists(atPath: daemon.socket))
        let (restarted, _) = try spawn(Binaries.lockd, ["--socket", daemon.socket] + state("restarted"))
        defer { kill(restarted.processIdentifier, SIGKILL) }
        #expect(eventually { (try? LockConnection(path: daemon.socket).ask("ping").isOK) == true })
    }

    @Test("SIGTERM: waiters get shutting_down, an open shield is waited for, then exit 0 and the socket is gone")
    func gracefulStop() throws {
        let daemon = try Daemon()
        let holder = try daemon.connect()
        let waiter = try daemon.connect()
        _ = try holder.acquire("g")
        _ = try holder.ask("shield", [("lock", "g"), ("on", true)])
        let waiting = try waiter.send(op: "acquire", [("lock", "g")])
        _ = try waiter.ask("ping")
        kill(daemon.process.processIdentifier, SIGTERM)
        #expect(try waiter.response(to: waiting, timeout: 5).code == "shutting_down")
        #expect(try waiter.acquire("other").code == "shutting_down")
        #expect(try holder.holders("g").count == 1, "status is still served")
        #expect(daemon.process.isRunning, "lockd waits for the open shield")
        // The listener stays open while the shield is waited for: a new client hears why.
        #expect(throws: ClientError.self) { _ = try LockConnection(path: daemon.socket).call(.ping, timeout: 5) }
        #expect(try holder.ask("shield", [("lock", "g"), ("on", false)]).isOK)
        #expect(eventually { !daemon.process.isRunning })
        #expect(daemon.process.terminationStatus == 0)
        #expect(!FileManager.default.fileExists(atPath: daemon.socket))
    }

    @Test("the shutdown grace bounds the wait for open shields")
    func graceBound() throws {
        let daemon = try Daemon(arguments: ["--shutdown-grace", "0.5"])
        let holder = try daemon.connect()
        _ = try holder.acquire("g")
        _ = try holder.ask("shield", [("lock", "g"), ("on", true)])
        let start = Date()
        #expect(daemon.stop(signal: SIGTERM, timeout: 10) == 0)
        let took = Date().timeIntervalSince(start)
        #expect(took >= 0.45 && took < 5)
    }
}
