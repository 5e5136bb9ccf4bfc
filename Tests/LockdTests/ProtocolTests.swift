import Foundation
import LockClient
import LockProtocol
import Testing

@Suite("protocol v1 against a real lockd", .serialized)
struct ProtocolTests {
    @Test("hello names the server, the protocol and the session")
    func hello() throws {
        let daemon = try Daemon()
        let answer = try daemon.connect().ask("hello")
        #expect(answer.isOK)
        #expect(answer["protocol"] == 1)
        #expect(answer["server"]?.string?.hasPrefix("lockd") == true)
        #expect(answer["session"]?.string != nil)
    }

    @Test("waiters are served FIFO and fences strictly increase")
    func fifoAndFences() throws {
        let daemon = try Daemon()
        let holder = try daemon.connect()
        let first = try holder.acquire("q")
        let clients = try (0..<3).map { _ in try daemon.connect() }
        var ids: [RequestID] = []
        for client in clients {
            ids.append(try client.send(op: "acquire", [("lock", "q")]))
            _ = try holder.ask("ping")  // the daemon has queued it before the next one asks
        }
        var fences = [first["fence"]?.intValue ?? 0]
        #expect(try holder.ask("release", [("lock", "q")])["count"] == 0)
        for (index, client) in clients.enumerated() {
            let grant = try client.response(to: ids[index], timeout: 5)
            #expect(grant.isOK, "client \(index) should be granted in turn")
            for later in clients[(index + 1)...] { #expect(try later.readMessage(timeout: 0.05) == nil) }
            fences.append(grant["fence"]?.intValue ?? 0)
            _ = try client.ask("release", [("lock", "q")])
        }
        #expect(fences == fences.sorted() && Set(fences).count == fences.count)
    }

    @Test("shared holders coexist; a shared request queues behind a waiting exclusive one")
    func sharedExclusive() throws {
        let daemon = try Daemon()
        let a = try daemon.connect()
        let b = try daemon.connect()
        let c = try daemon.connect()
        let d = try daemon.connect()
        #expect(try a.acquire("s", [("mode", "shared")]).isOK)
        #expect(try b.acquire("s", [("mode", "shared")]).isOK)
        let exclusive = try c.send(op: "acquire", [("lock", "s")])
        _ = try c.ask("ping")
        #expect(try d.acquire("s", [("mode", "shared"), ("wait", 0)]).code == "busy")
        _ = try a.ask("release", [("lock", "s")])
        _ = try b.ask("release", [("lock", "s")])
        #expect(try c.response(to: exclusive, timeout: 5)["mode"] == "exclusive")
    }

    @Test("an upgrade by the only shared holder is granted at once; a second upgrader is a deadlock")
    func upgrade() throws {
        let daemon = try Daemon()
        let a = try daemon.connect()
        let b = try daemon.connect()
        #expect(try a.acquire("u", [("mode", "shared")]).isOK)
        let up = try a.acquire("u")
        #expect(up["mode"] == "exclusive" && up["count"] == 2)
        _ = try a.ask("release", [("lock", "u"), ("all", true)])

        #expect(try a.acquire("u", [("mode", "shared")]).isOK)
        #expect(try b.acquire("u", [("mode", "shared")]).isOK)
        let waiting = try a.send(op: "acquire", [("lock", "u")])
        _ = try a.ask("ping")
        #expect(try b.acquire("u").code == "deadlock")
        _ = try b.ask("release", [("lock", "u")])
        let granted = try a.response(to: waiting, timeout: 5)
        #expect(granted["mode"] == "exclusive" && granted["count"] == 2)
    }

    @Test("an acquire that would close a wait-for cycle is refused with deadlock")
    func deadlock() throws {
        let daemon = try Daemon()
        let a = try daemon.connect()
        let b = try daemon.connect()
        #expect(try a.acquire("x").isOK)
        #expect(try b.acquire("y").isOK)
        let waiting = try a.send(op: "acquire", [("lock", "y")])
        _ = try a.ask("ping")
        let refused = try b.acquire("x")
        #expect(refused.code == "deadlock")
        #expect(try b.ask("release", [("lock", "y")]).isOK)
        #expect(try a.response(to: waiting, timeout: 5).isOK)
    }

    @Test("pipelined requests: a waiting acquire does not hold up later requests; cancel answers both")
    func pipelining() throws {
        let daemon = try Daemon()
        let holder = try daemon.connect()
        _ = try holder.acquire("p")
        let client = try daemon.connect()
        let lines = """
            {"id":"w","op":"acquire","lock":"p"}
            {"id":2,"op":"ping"}
            {"id":3,"op":"status","lock":"p"}
            {"id":4,"op":"cancel","request":"w"}

            """
        try client.sendRaw(Array(lines.utf8))
        var order: [String] = []
        for _ in 0..<4 {
            guard let message = try client.next() else { break }
            order.append(message["id"]?.serialized ?? "?")
            if message["id"] == "w" { #expect(message.code == "cancelled") }
        }
        #expect(order == ["2", "3", "\"w\"", "4"])
        #expect(try holder.holders("p").count == 1)
    }

    @Test("bad input gets invalid and loses nothing; a huge line gets too_large and only that client goes")
    func badInput() throws {
        let daemon = try Daemon()
        let holder = try daemon.connect()
        _ = try holder.acquire("keep")
        let bad = try daemon.connect()
        let cases: [(String, JSONValue)] = [
            ("not json", .null), ("[1,2]", .null), ("{\"op\":\"ping\"}", .null),
            ("{\"id\":7,\"op\":\"fly\"}", 7), ("{\"id\":\"s\",\"op\":\"acquire\",\"lock\":\"bad name\"}", "s"),
            ("{\"id\":8,\"op\":\"acquire\",\"lock\":\"x\",\"wait\":-1}", 8),
            ("{\"id\":9,\"op\":\"acquire\",\"lock\":\"x\",\"owner\":{\"token\":\"t\"}}", 9),
            ("{\"id\":10,\"op\":\"renew\",\"token\":\"t\",\"ttl\":0}", 10),
            ("{\"id\":11,\"op\":\"acquire\",\"lock\":\"x\",\"mode\":\"both\"}", 11),
        ]
        for (line, id) in cases {
            try bad.sendRaw(Array((line + "\n").utf8))
            let answer = try #require(try bad.next())
            #expect(answer.code == "invalid", "\(line)")
            #expect(answer["id"] == id, "\(line)")
        }
        #expect(try bad.ask("ping").isOK, "the connection stays usable")
        try bad.sendRaw(Array(repeating: UInt8(ascii: "a"), count: 70_000) + [10])
        #expect(try bad.next()?.code == "too_large")
        #expect(throws: ClientError.self) { _ = try bad.readMessage(timeout: 5) }
        #expect(try holder.holders("keep").count == 1)
        #expect(try holder.ask("ping").isOK)
    }

    @Test("a line of exactly 64 KiB is accepted")
    func lineLimitExcludesNewline() throws {
        let daemon = try Daemon()
        let client = try daemon.connect()
        let prefix = "{\"id\":1,\"op\":\"ping\",\"pad\":\""
        let padding = String(repeating: "x", count: 65536 - prefix.utf8.count - 2)
        try client.sendRaw(Array((prefix + padding + "\"}\n").utf8))
        #expect(try client.next()?.isOK == true)
    }

    @Test("a shield defers break until it closes; then the holder is told and the waiter gets the lock")
    func shieldDefersBreak() throws {
        let daemon = try Daemon()
        let holder = try daemon.connect()
        let waiter = try daemon.connect()
        let breaker = try daemon.connect()
        _ = try holder.acquire("b")
        #expect(try holder.ask("shield", [("lock", "b"), ("on", true)])["depth"] == 1)
        let waiting = try waiter.send(op: "acquire", [("lock", "b")])
        let broken = try breaker.ask("break", [("lock", "b")])
        #expect(broken["released"] == 0 && broken["deferred"] == 1)
        #expect(try waiter.readMessage(timeout: 0.2) == nil)
        #expect(try holder.ask("shield", [("lock", "b"), ("on", false)])["depth"] == 0)
        let event = try #require(try holder.next())
        #expect(event["event"] == "revoked" && event["reason"] == "break" && event["lock"] == "b")
        #expect(try waiter.response(to: waiting, timeout: 5).isOK)
        #expect(try holder.ask("release", [("lock", "b")]).code == "not_held")
        #expect(try holder.ask("shield", [("lock", "b"), ("on", false)]).code == "not_held")
        #expect(try breaker.ask("break", [("lock", "free")])["released"] == 0)
    }

    @Test("token leases expire unless renewed and outlive their connection")
    func leases() throws {
        let daemon = try Daemon()
        do {
            let client = try daemon.connect()
            let grant = try client.acquire("t1", [("owner", .object([("token", "job"), ("ttl", .double(0.6))]))])
            #expect(grant.isOK)
        }
        let watcher = try daemon.connect()
        #expect(try watcher.holders("t1").first?["owner"]?["token"] == "job")
        #expect(try watcher.holders("t1").first?["expires"]?.string != nil)
        #expect(try watcher.ask("renew", [("token", "job"), ("ttl", 2)])["expires"]?.string != nil)
        usleep(800_000)
        #expect(try watcher.holders("t1").count == 1, "renewed past the first ttl")
        #expect(eventually(timeout: 5) { (try? watcher.holders("t1").isEmpty) == true })
        #expect(try watcher.ask("renew", [("token", "job"), ("ttl", 1)]).code == "not_held")
    }

    @Test("waits time out with timeout; no-wait answers busy")
    func timeouts() throws {
        let daemon = try Daemon()
        let a = try daemon.connect()
        let b = try daemon.connect()
        _ = try a.acquire("w")
        #expect(try b.acquire("w", [("wait", 0)]).code == "busy")
        let start = Date()
        #expect(try b.acquire("w", [("wait", .double(0.3))]).code == "timeout")
        let waited = Date().timeIntervalSince(start)
        #expect(waited >= 0.29 && waited < 2)
    }

    @Test("a session's holds go when its connection closes; the next waiter gets the lock")
    func sessionClose() throws {
        let daemon = try Daemon()
        let waiter = try daemon.connect()
        var holder: LockConnection? = try daemon.connect()
        _ = try holder?.acquire("c")
        let waiting = try waiter.send(op: "acquire", [("lock", "c")])
        holder = nil
        #expect(try waiter.response(to: waiting, timeout: 5).isOK)
    }

    @Test("status describes holders and waiters; an unknown lock is an empty list")
    func status() throws {
        let daemon = try Daemon()
        let a = try daemon.connect()
        let b = try daemon.connect()
        _ = try a.acquire("st")
        _ = try b.send(op: "acquire", [("lock", "st"), ("mode", "shared")])
        _ = try b.ask("ping")
        let answer = try a.ask("status", [("lock", "st")])
        guard case .array(let locks)? = answer["locks"], let lock = locks.first else {
            Issue.record("no lock in \(answer.serialized)")
            return
        }
        #expect(lock["name"] == "st" && lock["mode"] == "exclusive" && lock["fence"] == 1)
        let holder = try #require(lock["holders"].flatMap { if case .array(let h) = $0 { h.first } else { nil } })
        for field in ["owner", "pid", "uid", "count", "since", "shielded", "expires"] {
            #expect(holder[field] != nil, "holder field \(field)")
        }
        #expect(holder["since"]?.string?.hasSuffix("Z") == true)
        let waiterEntry = lock["waiters"].flatMap { if case .array(let w) = $0 { w.first } else { nil } }
        #expect(waiterEntry?["mode"] == "shared")
        #expect(try a.ask("status", [("lock", "nothing")])["locks"] == .array([]))
    }
}

@Suite("connections and identities", .serialized)
struct ConnectionTests {
    @Test("a client that writes a request and half-closes still gets its answer")
    func halfClose() throws {
        let daemon = try Daemon()
        let client = try daemon.connect()
        try client.sendRaw(Array("{\"id\":1,\"op\":\"ping\"}\n".utf8))
        shutdown(client.fd, Int32(SHUT_WR))
        #expect(try client.next()?.isOK == true)
    }

    @Test("cancel of an id that is not pending is invalid")
    func cancelUnknown() throws {
        let daemon = try Daemon()
        #expect(try daemon.connect().ask("cancel", [("request", 99)]).code == "invalid")
    }

    @Test(
        "a non-root client may not claim a process that is not its ancestor, nor release another uid's hold",
        .enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv")))
    func peerCredentials() throws {
        let daemon = try Daemon()
        let asNobody = ["--reuid=65534", "--regid=65534", "--clear-groups", Binaries.lockctl]
        let environment = ["LOCKD_SOCKET": daemon.socket]
        let claim = try execute(
            "/usr/bin/setpriv", asNobody + ["acquire", "p", "--pid", "1"], environment: environment)
        #expect(claim.status == 77, "\(claim.stderr)")
        let root = try daemon.connect()
        #expect(try root.acquire("mine", [("owner", .object([("pid", .int(Int64(getpid())))]))]).isOK)
        let release = try execute(
            "/usr/bin/setpriv", asNobody + ["release", "mine", "--pid", "\(getpid())"], environment: environment)
        #expect(release.status == 77, "\(release.stderr)")
        #expect(try root.holders("mine").count == 1)
    }
}
