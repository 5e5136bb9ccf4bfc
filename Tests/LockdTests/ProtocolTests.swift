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
        .enabled(if: canSwitchUser))
    func peerCredentials() throws {
        let daemon = try Daemon()
        let claim = try lockctlAsNobody(daemon, "acquire", "p", "--pid", "1")
        #expect(claim.status == 77, "\(claim.stderr)")
        let root = try daemon.connect()
        #expect(try root.acquire("mine", [("owner", .object([("pid", .int(Int64(getpid())))]))]).isOK)
        let release = try lockctlAsNobody(daemon, "release", "mine", "--pid", "\(getpid())")
        #expect(release.status == 77, "\(release.stderr)")
        #expect(try root.holders("mine").count == 1)
    }
}
