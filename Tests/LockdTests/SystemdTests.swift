import Foundation
import LockClient
import LockProtocol
import Testing

/// A fresh directory for sockets a test binds before lockd starts.
func scratchDirectory() throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("lockd-sd-\(UUID().uuidString.prefix(8))")
        .path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

@Suite("lockd under systemd", .serialized)
struct SystemdTests {
    @Test("systemd-socket-activate -l PATH: lockd serves the socket it inherits and leaves its file alone")
    func socketActivation() throws {
        let daemon = try Daemon { socket, lockd in ["/usr/bin/systemd-socket-activate", "-l", socket] + lockd }
        let client = try daemon.connect()
        #expect(try client.acquire("activated").isOK)
        #expect(try client.holders("activated").count == 1)
        #expect(try daemon.lockctl("status", "activated").stdout.contains("activated"))
        #expect(daemon.log.contains("socket activation"), "\(daemon.log)")
        #expect(daemon.stop(signal: SIGTERM) == 0)
        #expect(FileManager.default.fileExists(atPath: daemon.socket), "the socket belongs to the service manager")
    }

    @Test(
        "NOTIFY_SOCKET: READY=1 with a STATUS, STATUS follows the table, WATCHDOG=1 at half of WATCHDOG_USEC, STOPPING=1"
    )
    func notify() throws {
        let scratch = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let listener = try DatagramListener(path: scratch + "/notify")
        let daemon = try Daemon(environment: ["NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "300000"])

        let ready = listener.collect(timeout: 5) { $0.last?.1["READY"] == "1" }
        let readyFields = try #require(ready.last?.1)
        #expect(readyFields["READY"] == "1")
        // The harness's readiness probe may already be connected when READY goes out.
        let readyStatus = readyFields["STATUS"] ?? ""
        #expect(
            readyStatus == "serving 0 clients, 0 locks held, 0 waiters"
                || readyStatus == "serving 1 client, 0 locks held, 0 waiters", "\(readyFields)")

        let holder = try daemon.connect()
        #expect(try holder.acquire("n").isOK)
        #expect(try holder.ask("shield", [("lock", "n"), ("on", true)]).isOK)
        let waiter = try daemon.connect()
        _ = try waiter.send(op: "acquire", [("lock", "n")])
        let updates = listener.collect(timeout: 3) { $0.last?.1["STATUS"]?.contains("1 waiter") == true }
        #expect(updates.last?.1["STATUS"] == "serving 2 clients, 1 lock held, 1 waiter", "\(updates.map(\.1))")

        // 300 ms watchdog: a ping every 150 ms, sent from the event loop.
        let pings = listener.collect(timeout: 1.6) { _ in false }.filter { $0.1["WATCHDOG"] == "1" }.map(\.0)
        #expect((8...13).contains(pings.count), "\(pings.count) pings in 1.6 s")
        let gaps = zip(pings.dropFirst(), pings).map { $0.timeIntervalSince($1) }.sorted()
        if !gaps.isEmpty {
            let median = gaps[gaps.count / 2]
            #expect(median > 0.12 && median < 0.18, "median gap \(median)")
        }

        kill(daemon.process.processIdentifier, SIGTERM)
        let stopping = listener.collect(timeout: 5) { $0.last?.1["STOPPING"] == "1" }
        let stopFields = try #require(stopping.last?.1)
        #expect(stopFields["STOPPING"] == "1")
        #expect(stopFields["STATUS"]?.contains("1 open shield") == true, "\(stopFields)")
        #expect(daemon.process.isRunning, "the open shield is waited for")
        #expect(try holder.ask("shield", [("lock", "n"), ("on", false)]).isOK)
        #expect(waitExit(daemon.process) == 0)
    }

    @Test("SIGTERM with an open shield waits for it no longer than shutdown.grace from the file")
    func graceFromFile() throws {
        let daemon = try Daemon(config: "[shutdown]\ngrace = 0.6\n")
        let holder = try daemon.connect()
        #expect(try holder.acquire("g").isOK)
        #expect(try holder.ask("shield", [("lock", "g"), ("on", true)]).isOK)
        let start = Date()
        #expect(daemon.stop(signal: SIGTERM, timeout: 10) == 0)
        let took = Date().timeIntervalSince(start)
        #expect(took >= 0.55 && took < 3, "stopped after \(took) s")
        #expect(daemon.log.contains("waiting up to 0.6s for 1 open shield(s)"), "\(daemon.log)")
    }

    @Test(
        "records go to the journal with --log journal, and by default when stderr is $JOURNAL_STREAM",
        .enabled(if: canMountPrivately()), arguments: [true, false])
    func journal(explicit: Bool) throws {
        let scratch = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let journal = try DatagramListener(path: scratch + "/socket")
        journal.drainInBackground()
        // A private mount namespace puts our listener where sd_journal_sendv looks for journald.
        let daemon = try Daemon(arguments: explicit ? ["--log", "journal"] : []) { socket, lockd in
            // systemd's way of saying "stderr is the journal": device:inode of that stream, here
            // the log file the harness connects to lockd's stderr.
            var log = stat()
            stat((socket as NSString).deletingLastPathComponent + "/lockd.log", &log)
            let stream = explicit ? "" : "JOURNAL_STREAM=\(log.st_dev):\(log.st_ino) "
            let command = (lockd + ["--socket", socket]).map { "'\($0)'" }.joined(separator: " ")
            return [
                "/usr/bin/unshare", "-m", "--propagation", "private", "/bin/sh", "-c",
                "mount -t tmpfs none /run && mkdir -p /run/systemd/journal && mount --bind '\(scratch)' /run/systemd/journal && \(stream)exec \(command)",
            ]
        }
        let client = try daemon.connect()
        #expect(try client.acquire("journaled").isOK)
        #expect(try client.ask("break", [("lock", "journaled")]).isOK)
        let records = journal.collect(timeout: 5) { $0.contains { $0.1["MESSAGE"] == "lock broken" } }.map(\.1)
        let broken = try #require(records.first { $0["MESSAGE"] == "lock broken" }, "\(records)")
        #expect(broken["LOCK_NAME"] == "journaled")
        #expect(broken["PRIORITY"] == "5")
        #expect(broken["SYSLOG_IDENTIFIER"] == "lockd")
        #expect(broken["CLIENT_PID"] != nil)
        #expect(broken["CODE_FILE"] != nil && broken["CODE_LINE"] != nil)
        let granted = try #require(records.first { $0["MESSAGE"] == "granted" }, "\(records)")
        #expect(granted["LOCK_FENCE"] == "1" && granted["PRIORITY"] == "7")
        #expect(!daemon.log.contains("lock broken"), "records go to the journal, not stderr")
    }
}

extension SystemdTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path

    @Test("systemd/ passes systemd-analyze verify; sysusers and tmpfiles apply; the grace fits TimeoutStopSec")
    func unitFiles() throws {
        let scratch = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let units = Self.repository + "/systemd"
        // verify checks that ExecStart exists: point it at the binary under test.
        let service = try String(contentsOfFile: units + "/lockd.service", encoding: .utf8)
        #expect(service.contains("ExecStart=/usr/local/bin/lockd "), "the Makefile rewrites this path")
        try service.replacingOccurrences(of: "/usr/local/bin/lockd", with: Binaries.lockd)
            .write(toFile: scratch + "/lockd.service", atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(atPath: units + "/lockd.socket", toPath: scratch + "/lockd.socket")
        let verify = try execute(
            "/usr/bin/systemd-analyze", ["verify", scratch + "/lockd.socket", scratch + "/lockd.service"])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        #expect(verify.stderr.isEmpty, "no warnings: \(verify.stderr)")

        let root = scratch + "/root"
        try FileManager.default.createDirectory(atPath: root + "/etc", withIntermediateDirectories: true)
        let sysusers = try execute("/usr/bin/systemd-sysusers", ["--root=" + root, units + "/lockd.sysusers"])
        #expect(sysusers.status == 0, "\(sysusers.stderr)")
        #expect(try String(contentsOfFile: root + "/etc/group", encoding: .utf8).contains("lockd:"))
        let tmpfiles = try execute(
            "/usr/bin/systemd-tmpfiles", ["--root=" + root, "--create", units + "/lockd.tmpfiles"])
        #expect(tmpfiles.status == 0, "\(tmpfiles.stderr)")
        #expect(FileManager.default.fileExists(atPath: root + "/run/lockd"))

        let config = try String(contentsOfFile: Self.repository + "/config/lockd.toml", encoding: .utf8)
        let grace = try #require(Self.number(after: "\ngrace = ", in: config))
        let stop = try #require(Self.number(after: "\nTimeoutStopSec=", in: service))
        #expect(grace < stop, "shutdown.grace \(grace) s must end before TimeoutStopSec \(stop) s")
        let watchdog = try #require(Self.number(after: "\nWatchdogSec=", in: service))
        #expect(watchdog >= 2)
    }

    private static func number(after prefix: String, in text: String) -> Double? {
        guard let range = text.range(of: prefix) else { return nil }
        return Double(text[range.upperBound...].prefix { $0.isNumber || $0 == "." })
    }

    @Test(
        "an unprivileged lockd (as User=lockd) on an inherited socket serves root clients and watches their processes"
    )
    func unprivileged() throws {
        let daemon = try Daemon { socket, lockd in
            // As StateDirectory= does, give the service user its state directory.
            let state = (socket as NSString).deletingLastPathComponent + "/state"
            mkdir(state, 0o700)
            chown(state, 65534, 65534)
            return [
                "/usr/bin/systemd-socket-activate", "-l", socket, "/usr/bin/setpriv", "--reuid=65534", "--regid=65534",
                "--clear-groups",
            ] + lockd
        }
        let script = try daemon.shell(
            "$L acquire held && $L status held --json && ps -o user= -p \(daemon.process.processIdentifier)")
        #expect(script.status == 0, "\(script.stderr)")
        #expect(script.stdout.contains("\"cmdline\""), "lockd reads /proc of a root client: \(script.stdout)")
        #expect(script.stdout.contains("nobody"), "lockd runs as nobody: \(script.stdout)")
        let client = try daemon.connect()
        #expect(eventually { (try? client.holders("held").isEmpty) == true }, "the script's exit released its hold")
        #expect(daemon.stop() == 0)
    }
}

/// Whether this machine lets us make a private mount namespace (root with CAP_SYS_ADMIN).
func canMountPrivately() -> Bool {
    (try? execute("/usr/bin/unshare", ["-m", "--propagation", "private", "/bin/true"], timeout: 5).status) == 0
}
