import Foundation
import LockClient
import LockProtocol
import Testing

@Suite("lockctl against a real lockd", .serialized)
struct LockctlTests {
    @Test("two acquires in one script are one re-entrant hold of the script, gone when it exits")
    func reentranceAcrossInvocations() throws {
        let daemon = try Daemon()
        let output = try daemon.shell(
            """
            $L acquire db && $L acquire db --json && $L status db --json
            """)
        #expect(output.status == 0, "\(output.stderr)")
        #expect(output.stdout.contains("\"count\":2"))
        #expect(output.stdout.contains("\"pid\""))
        // The script has exited: its hold is gone, and another shell gets the lock at once.
        let next = try daemon.lockctl("acquire", "db", "--no-wait", "--pid", "\(getpid())")
        #expect(next.status == 0, "\(next.stderr)")
        #expect(try daemon.lockctl("release", "db", "--pid", "\(getpid())").status == 0)
    }

    @Test("a hold is released when its owner process is killed with SIGKILL")
    func releaseOnOwnerDeath() throws {
        let daemon = try Daemon()
        let (script, _) = try spawn(
            "/bin/bash", ["-c", "\"$L\" acquire victim && echo held && exec sleep 30"],
            environment: ["LOCKD_SOCKET": daemon.socket, "L": Binaries.lockctl])
        let client = try daemon.connect()
        #expect(eventually { (try? client.holders("victim").count) == 1 })
        kill(script.processIdentifier, SIGKILL)
        _ = waitExit(script)
        #expect(eventually { (try? client.holders("victim").isEmpty) == true })
        #expect(try daemon.lockctl("acquire", "victim", "--no-wait", "--pid", "\(getpid())").status == 0)
    }

    @Test("exit codes: busy 1 (or --conflict-exit-code), not held 2, usage 64, unreachable 69")
    func exitCodes() throws {
        let daemon = try Daemon()
        let holder = try daemon.connect()
        _ = try holder.acquire("e")
        let busy = try daemon.lockctl("acquire", "e", "--no-wait")
        #expect(busy.status == 1)
        #expect(busy.stderr.hasPrefix("lockctl: ") && busy.stderr.contains("\"e\""))
        #expect(try daemon.lockctl("acquire", "e", "--no-wait", "--conflict-exit-code", "9").status == 9)
        #expect(try daemon.lockctl("acquire", "e", "--wait", "0.2").status == 1)
        #expect(try daemon.lockctl("release", "e").status == 2)
        #expect(try daemon.lockctl("renew", "--token", "none", "--ttl", "3").status == 2)
        #expect(try daemon.lockctl("acquire", "bad name").status == 65)
        #expect(try daemon.lockctl("acquire").status == 64)
        #expect(try daemon.lockctl("acquire", "x", "--wait", "1", "--no-wait").status == 64)
        let unreachable = try execute(Binaries.lockctl, ["--socket", daemon.directory + "/none.sock", "status"])
        #expect(unreachable.status == 69)
        #expect(unreachable.stderr.contains("none.sock"))
        let after = try execute(Binaries.lockctl, ["status", "--socket", daemon.socket])
        #expect(after.status == 0)
        for binary in [Binaries.lockctl, Binaries.lockd] {
            let version = try execute(binary, ["--version"])
            #expect(version.status == 0 && version.stdout == "\(lockdVersion)\n", "\(version)")
        }
        #expect(try daemon.connect().call(op: "hello")["server"]?.string == "lockd \(lockdVersion)")
    }

    @Test("shared holds coexist across lockctl invocations; exclusive waits for them")
    func sharedWithLockctl() throws {
        let daemon = try Daemon()
        let me = "\(getpid())"
        #expect(try daemon.lockctl("acquire", "sh", "--shared", "--pid", me).status == 0)
        let other = try daemon.connect()
        #expect(try other.acquire("sh", [("mode", "shared"), ("wait", 0)]).isOK)
        #expect(try daemon.lockctl("acquire", "sh", "--no-wait").status == 1)
    }

    @Test("run holds the lock while CMD runs and exits with its status")
    func run() throws {
        let daemon = try Daemon()
        let output = try daemon.shell("$L run job -- sh -c '$L status job --json; exit 7'")
        #expect(output.status == 7)
        #expect(output.stdout.contains("\"name\":\"job\""))
        #expect(try daemon.connect().holders("job").isEmpty)
        #expect(try daemon.lockctl("run", "job", "--", "/nonexistent/cmd").status == 127)
    }

    @Test("run --shield holds back SIGTERM until CMD ends, then exits 128+signal")
    func runShieldDefersSignals() throws {
        let daemon = try Daemon()
        let marker = daemon.directory + "/done"
        let (run, _) = try spawn(
            Binaries.lockctl, ["run", "mig", "--shield", "--", "sh", "-c", "sleep 0.6; touch \(marker)"],
            environment: ["LOCKD_SOCKET": daemon.socket])
        let client = try daemon.connect()
        #expect(eventually { (try? client.holders("mig").first?["shielded"]) == 1 })
        kill(run.processIdentifier, SIGTERM)
        usleep(50_000)  // two signals pending at once are read lowest number first
        kill(run.processIdentifier, SIGINT)
        _ = waitExit(run)
        #expect(diedBy(run) == SIGTERM, "the first deferred signal decides how lockctl ends")
        #expect(FileManager.default.fileExists(atPath: marker), "CMD ran to its end")
        #expect(try client.holders("mig").isEmpty)
    }

    @Test("run --shield makes break wait for CMD")
    func runShieldDefersBreak() throws {
        let daemon = try Daemon()
        let (run, _) = try spawn(
            Binaries.lockctl, ["run", "mb", "--shield", "--", "sleep", "0.5"],
            environment: ["LOCKD_SOCKET": daemon.socket])
        let client = try daemon.connect()
        #expect(eventually { (try? client.holders("mb").first?["shielded"]) == 1 })
        let broken = try daemon.lockctl("break", "mb", "--json")
        #expect(broken.stdout.contains("\"deferred\":1"))
        #expect(try client.holders("mb").count == 1)
        #expect(waitExit(run) == 3, "CMD finished; the break applied when the shield closed is reported")
    }

    @Test("without --shield a signal to lockctl reaches CMD exactly once")
    func runForwardsSignalsOnce() throws {
        let daemon = try Daemon()
        let count = daemon.directory + "/count"
        let ready = daemon.directory + "/ready"
        let script = "trap 'echo x >> \(count); exit 5' TERM; touch \(ready); sleep 5 & wait"
        let (run, _) = try spawn(
            Binaries.lockctl, ["run", "f", "--", "bash", "-c", script], environment: ["LOCKD_SOCKET": daemon.socket])
        // The command says when its trap is set: a signal before that would kill bash outright.
        #expect(eventually { FileManager.default.fileExists(atPath: ready) })
        kill(run.processIdentifier, SIGTERM)
        #expect(waitExit(run) == 5)
        #expect((try? String(contentsOfFile: count, encoding: .utf8)) == "x\n")
    }

    @Test("a signal while waiting for the lock cancels the wait and leaves no hold")
    func signalWhileWaiting() throws {
        let daemon = try Daemon()
        let holder = try daemon.connect()
        _ = try holder.acquire("sw")
        let (run, _) = try spawn(
            Binaries.lockctl, ["run", "sw", "--", "true"], environment: ["LOCKD_SOCKET": daemon.socket])
        #expect(
            eventually { ((try? holder.ask("status", [("lock", "sw")]).serialized) ?? "").contains("\"waiters\":[{") })
        kill(run.processIdentifier, SIGINT)
        _ = waitExit(run)
        #expect(diedBy(run) == SIGINT)
        _ = try holder.ask("release", [("lock", "sw")])
        #expect(try holder.holders("sw").isEmpty)
    }

    @Test("with --close, if lockctl run dies, CMD dies with it and the lock is free")
    func runChildDiesWithLockctl() throws {
        let daemon = try Daemon()
        let pidFile = daemon.directory + "/child.pid"
        let (run, _) = try spawn(
            Binaries.lockctl, ["run", "d", "--close", "--", "sh", "-c", "echo $$ > \(pidFile); exec sleep 30"],
            environment: ["LOCKD_SOCKET": daemon.socket])
        #expect(eventually { ((try? String(contentsOfFile: pidFile, encoding: .utf8)) ?? "").hasSuffix("\n") })
        let child =
            Int32(
                ((try? String(contentsOfFile: pidFile, encoding: .utf8)) ?? "").trimmingCharacters(
                    in: .whitespacesAndNewlines)) ?? 0
        kill(run.processIdentifier, SIGKILL)
        _ = waitExit(run)
        #expect(child > 0)
        #expect(eventually { kill(child, 0) != 0 })
        #expect(eventually { (try? daemon.connect().holders("d").isEmpty) == true })
    }

    @Test("shield -- CMD defers signals without a daemon")
    func shieldWithoutDaemon() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("shield-\(getpid())").path
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let marker = directory + "/done"
        let started = directory + "/started"
        let (shield, _) = try spawn(
            Binaries.lockctl, ["shield", "--", "sh", "-c", "touch \(started); sleep 0.5; touch \(marker)"],
            environment: ["LOCKD_SOCKET": directory + "/none.sock"])
        // lockctl holds signals back before it starts the command, so once it runs, SIGHUP waits.
        #expect(eventually { FileManager.default.fileExists(atPath: started) })
        kill(shield.processIdentifier, SIGHUP)
        _ = waitExit(shield)
        #expect(diedBy(shield) == SIGHUP)
        #expect(FileManager.default.fileExists(atPath: marker))
        let plain = try execute(Binaries.lockctl, ["shield", "--", "sh", "-c", "exit 4"])
        #expect(plain.status == 4)
    }

    @Test("token holds via lockctl: acquire with --token/--ttl, renew, release")
    func tokens() throws {
        let daemon = try Daemon()
        #expect(try daemon.lockctl("acquire", "tk", "--token", "deploy", "--ttl", "30").status == 0)
        #expect(try daemon.lockctl("renew", "--token", "deploy", "--ttl", "30").status == 0)
        #expect(try daemon.lockctl("acquire", "tk", "--no-wait").status == 1)
        #expect(try daemon.lockctl("release", "tk", "--token", "deploy").status == 0)
        let noTTL = try daemon.lockctl("acquire", "tk", "--token", "deploy")
        #expect(noTTL.status == 65, "lockd has no limits.default_ttl here")
        #expect(noTTL.stderr.contains("needs \"ttl\""), "\(noTTL.stderr)")
    }

    @Test("status prints a readable table and the protocol's JSON")
    func statusOutput() throws {
        let daemon = try Daemon()
        #expect(try daemon.lockctl("status").stdout == "no locks held\n")
        let holder = try daemon.connect()
        _ = try holder.acquire("tbl")
        let table = try daemon.lockctl("status")
        #expect(table.stdout.hasPrefix("LOCK"))
        #expect(table.stdout.contains("tbl"))
        let json = try daemon.lockctl("status", "--json")
        let parsed = try JSONValue.parse(Array(json.stdout.utf8))
        #expect(parsed["locks"] != nil)
    }
}
