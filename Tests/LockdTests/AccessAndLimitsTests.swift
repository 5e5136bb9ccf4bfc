import Foundation
import LockClient
import LockProtocol
import Testing

/// Runs lockctl as uid/gid 65534 (nobody) with the given supplementary groups.
func lockctlAsNobody(_ daemon: Daemon, groups: [Int] = [], _ arguments: String...) throws -> Output {
    let credentials =
        ["--reuid=65534", "--regid=65534"]
        + (groups.isEmpty ? ["--clear-groups"] : ["--groups=" + groups.map(String.init).joined(separator: ",")])
    return try execute(
        "/usr/bin/setpriv", credentials + [try lockctlForOthers(daemon)] + arguments,
        environment: ["LOCKD_SOCKET": daemon.socket])
}

/// lockctl, with the lockctl-full it hands unusual lines to, linked into the daemon's directory,
/// where any user may reach them. The build directory may sit under a parent only root may enter
/// (a clone in `mktemp -d`): setpriv still starts lockctl there, but lockctl, as nobody, cannot
/// then find lockctl-full beside itself.
func lockctlForOthers(_ daemon: Daemon) throws -> String {
    let directory = daemon.directory + "/bin"
    if !FileManager.default.fileExists(atPath: directory + "/lockctl-full") {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for name in ["lockctl", "lockctl-full"] where link(Binaries.directory + "/" + name, directory + "/" + name) != 0
        {
            // Another file system: a copy (no test runs it before it is complete).
            try FileManager.default.copyItem(atPath: Binaries.directory + "/" + name, toPath: directory + "/" + name)
        }
    }
    return directory + "/lockctl"
}

let canSwitchUser = getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv")

@Suite("access control and limits", .serialized)
struct AccessAndLimitsTests {
    @Test(
        "[access] rules decide acquire, status and break by user and group; a refusal changes nothing",
        .enabled(if: canSwitchUser))
    func rules() throws {
        let daemon = try Daemon(
            config: """
                [access]
                break = ["@users"]

                [[access.rule]]
                locks = "secure/*"
                acquire = ["@users"]
                status = ["@users"]
                """)
        let root = try daemon.connect()
        #expect(try root.acquire("secure/held").isOK, "root may do everything")
        #expect(try root.acquire("open/held").isOK)

        let refused = try lockctlAsNobody(daemon, "run", "secure/x", "--wait", "0", "--", "true")
        #expect(refused.status == 77, "\(refused.stderr)")
        #expect(refused.stderr.contains("may not acquire"), "\(refused.stderr)")
        #expect(try lockctlAsNobody(daemon, groups: [100], "run", "secure/x", "--wait", "0", "--", "true").status == 0)
        #expect(
            try lockctlAsNobody(daemon, "run", "open/x", "--wait", "0", "--", "true").status == 0, "no rule: anyone")

        #expect(try lockctlAsNobody(daemon, "status", "secure/held").status == 77)
        let listing = try lockctlAsNobody(daemon, "status", "--json")
        #expect(listing.status == 0)
        #expect(listing.stdout.contains("open/held") && !listing.stdout.contains("secure/held"), "\(listing.stdout)")
        #expect(try lockctlAsNobody(daemon, groups: [100], "status", "secure/held").stdout.contains("secure/held"))

        let breakRefused = try lockctlAsNobody(daemon, "break", "open/held")
        #expect(breakRefused.status == 77, "only root and access.break may break: \(breakRefused.stderr)")
        #expect(try root.holders("open/held").count == 1, "a refused break changes nothing")
        #expect(try lockctlAsNobody(daemon, groups: [100], "break", "open/held").status == 0)
        #expect(try root.holders("open/held").isEmpty)
    }

    @Test("without rules, break is root's, and a token belongs to the uid that created it", .enabled(if: canSwitchUser))
    func defaults() throws {
        let daemon = try Daemon()
        let root = try daemon.connect()
        #expect(try root.acquire("mine", [("owner", .object([("token", "t1"), ("ttl", 30)]))]).isOK)
        let stolen = try lockctlAsNobody(daemon, "acquire", "other", "--token", "t1", "--ttl", "30", "--wait", "0")
        #expect(stolen.status == 77, "\(stolen.stderr)")
        #expect(try lockctlAsNobody(daemon, "release", "mine", "--token", "t1").status == 77)
        #expect(try lockctlAsNobody(daemon, "break", "mine").status == 77)
        #expect(try root.holders("mine").count == 1)
        #expect(try root.holders("other").isEmpty)
    }

    @Test("per-connection and per-uid caps answer limit and keep every hold", .enabled(if: canSwitchUser))
    func caps() throws {
        let daemon = try Daemon(
            config: "[limits]\nmax_pending_per_connection = 2\nmax_holds_per_uid = 2\nmax_name_bytes = 16\n")
        let holder = try daemon.connect()
        #expect(try holder.acquire("busy").isOK)
        let waiter = try daemon.connect()
        _ = try waiter.send(op: "acquire", [("lock", "busy")])
        _ = try waiter.send(op: "acquire", [("lock", "busy"), ("mode", "shared")])
        #expect(try waiter.acquire("busy", [("owner", .object([("token", "w"), ("ttl", 5)]))]).code == "limit")
        #expect(try waiter.acquire("free").isOK, "at the waiting cap an acquire that needs no wait is granted")
        #expect(try waiter.acquire("aaaaaaaaaaaaaaaaaaaa").code == "invalid", "names over max_name_bytes")

        // One setpriv per command: a shell running as nobody cannot exec lockctl from a build
        // directory under a 0700 parent (mktemp -d), while setpriv still can.
        var lines: [String] = []
        var errors = ""
        for (label, lock) in [("a", "cap-a"), ("b", "cap-b"), ("c", "cap-c"), ("again", "cap-a")] {
            let run = try lockctlAsNobody(daemon, "acquire", lock, "--token", "cap", "--ttl", "30", "--wait", "0")
            lines.append("\(label)=\(run.status)")
            errors += run.stderr
        }
        let script = Output(status: 0, stdout: lines.joined(separator: "\n"), stderr: errors)
        #expect(script.stdout.contains("a=0") && script.stdout.contains("b=0"), "\(script.stdout)\(script.stderr)")
        #expect(script.stdout.contains("c=75"), "the third hold of uid 65534 is over the cap: \(script.stdout)")
        #expect(script.stdout.contains("again=0"), "a re-entrant acquire adds no hold: \(script.stdout)")
        #expect(script.stderr.contains("max_holds_per_uid"), "\(script.stderr)")
        #expect(try holder.holders("cap-a").count == 1 && holder.holders("cap-c").isEmpty)
    }

    @Test("a client that never reads its answers is not read from, then dropped; others go on")
    func backPressure() throws {
        let daemon = try Daemon(config: "[limits]\nmax_output_bytes = 4096\nwrite_timeout = 0.5\n")
        let other = try daemon.connect()
        #expect(try other.acquire("kept").isOK)
        let flooder = try daemon.connect()
        #expect(try flooder.acquire("flood").isOK)
        // Status answers are large; never read them. A blocking writer must give up or be dropped.
        let request = Array("{\"op\":\"status\"}\n".utf8)
        var writes = 0
        var dropped = false
        let start = Date()
        while Date().timeIntervalSince(start) < 10 {
            do {
                try flooder.sendRaw(request)
                writes += 1
            } catch {
                dropped = true
                break
            }
        }
        #expect(dropped, "lockd dropped the client after \(writes) requests")
        #expect(daemon.log.contains("does not read its answers"), "\(daemon.log)")
        #expect(try other.ask("ping").isOK)
        #expect(try other.holders("kept").count == 1)
        #expect(eventually { (try? other.holders("flood").isEmpty) == true }, "the dropped session's hold is gone")
    }

    @Test("a request line left incomplete (slowloris) is answered timeout and closed")
    func slowloris() throws {
        let daemon = try Daemon(config: "[limits]\nline_timeout = 0.4\n")
        let slow = try daemon.connect()
        let start = Date()
        try slow.sendRaw(Array("{\"op\":\"pi".utf8))
        let answer = try #require(try slow.next(timeout: 5))
        #expect(answer.code == "timeout", "\(answer)")
        #expect(Date().timeIntervalSince(start) >= 0.35)
        #expect(throws: ClientError.self) { _ = try slow.call(op: "ping", timeout: 2) }

        let steady = try daemon.connect()
        for _ in 0..<4 {
            usleep(200_000)
            #expect(try steady.ask("ping").isOK, "complete lines keep an idle connection alive")
        }
    }
}
