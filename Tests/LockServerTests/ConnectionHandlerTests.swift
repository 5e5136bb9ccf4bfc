import LockCore
import LockProtocol
import NIOCore
import NIOEmbedded
import NIOTestUtils
import Testing

@testable import LockServer

@Suite("the connection handler in process")
struct ConnectionHandlerTests {
    @Test("a line is answered; a pipelined burst is answered in order")
    func answers() throws {
        let harness = ServiceHarness()
        let client = try harness.connect(pid: 100)
        let answers = try harness.send(
            "{\"id\":1,\"op\":\"acquire\",\"lock\":\"db\"}\n{\"id\":2,\"op\":\"acquire\",\"lock\":\"db\"}\n"
                + "{\"id\":3,\"op\":\"release\",\"lock\":\"db\",\"all\":true}\n", on: client)
        #expect(answers.map { $0["id"] } == [1, 2, 3])
        #expect(answers[1]["count"] == 2)
        #expect(answers[2]["count"] == 0)
    }

    @Test("a waiter is answered when the holder's connection closes; a closed waiter leaves no trace")
    func handOff() throws {
        let harness = ServiceHarness()
        let holder = try harness.connect(pid: 100)
        let waiter = try harness.connect(pid: 101)
        _ = try harness.send("{\"id\":1,\"op\":\"acquire\",\"lock\":\"db\"}\n", on: holder)
        #expect(try harness.send("{\"id\":7,\"op\":\"acquire\",\"lock\":\"db\"}\n", on: waiter).isEmpty)
        _ = try holder.close().wait()
        harness.loop.run()
        let granted = try harness.answers(on: waiter)
        #expect(granted.first?["id"] == 7 && granted.first?["ok"] == true)
        #expect(harness.service.inspectTable { $0.invariantViolations() }.isEmpty)
    }

    @Test("a line over the limit is answered too_large and the connection closes; others are untouched")
    func oversized() throws {
        var configuration = LockdConfiguration()
        configuration.limits.maxLineBytes = 256
        let harness = ServiceHarness(configuration: configuration)
        let bystander = try harness.connect(pid: 100)
        _ = try harness.send("{\"id\":1,\"op\":\"acquire\",\"lock\":\"kept\"}\n", on: bystander)
        let client = try harness.connect(pid: 101)
        let answers = try harness.send(String(repeating: "x", count: 300), on: client)
        #expect(answers.first?["error"]?["code"] == "too_large")
        #expect(!client.isActive)
        #expect(harness.service.inspectTable { $0.holds(LockName("kept")!, owner: .session(SessionID(1))) })
    }

    @Test("an incomplete line is dropped after limits.line_timeout, with a timeout answer")
    func slowLine() throws {
        var configuration = LockdConfiguration()
        configuration.limits.lineTimeout = 2
        let harness = ServiceHarness(configuration: configuration)
        let client = try harness.connect(pid: 100)
        #expect(try harness.send("{\"id\":1,", on: client).isEmpty)
        harness.loop.advanceTime(by: .seconds(1))
        #expect(client.isActive)
        harness.loop.advanceTime(by: .seconds(2))
        #expect(try harness.answers(on: client).first?["error"]?["code"] == "timeout")
        #expect(!client.isActive)
    }

    @Test("the line decoder splits any byte stream into the same lines")
    func decoderVerifier() throws {
        let limits = LockdConfiguration.Limits()
        try ByteToMessageDecoderVerifier.verifyDecoder(
            inputOutputPairs: [
                (ByteBuffer(string: "a\n"), [ByteBuffer(string: "a")]),
                (ByteBuffer(string: "one\r\ntwo\n"), [ByteBuffer(string: "one"), ByteBuffer(string: "two")]),
                (ByteBuffer(string: "\n"), [ByteBuffer(string: "")]),
                (ByteBuffer(string: "{\"id\":1}\n{}\n"), [ByteBuffer(string: "{\"id\":1}"), ByteBuffer(string: "{}")]),
            ],
            decoderFactory: { LineFrameDecoder { limits } })
    }
}

@Suite("time through the service, on a manual clock")
struct ServiceTimeTests {
    @Test("a token lease outlives its connection, a renew extends it, and it runs out unless renewed")
    func leases() throws {
        let harness = ServiceHarness()
        let first = try harness.connect(pid: 100)
        let granted = try harness.send(
            "{\"id\":1,\"op\":\"acquire\",\"lock\":\"t1\",\"owner\":{\"token\":\"job\",\"ttl\":0.6}}\n", on: first)
        #expect(granted.first?["fence"] != nil)
        _ = try first.close().wait()
        let watcher = try harness.connect(pid: 101)
        func held() throws -> Bool {
            let status = try harness.send("{\"id\":\"s\",\"op\":\"status\",\"lock\":\"t1\"}\n", on: watcher)
            guard case .array(let locks)? = status.first?["locks"] else { return false }
            return !locks.isEmpty
        }
        #expect(try held(), "a token hold outlives its connection")
        let renewed = try harness.send("{\"id\":2,\"op\":\"renew\",\"token\":\"job\",\"ttl\":2}\n", on: watcher)
        #expect(renewed.first?["expires"]?.string?.hasPrefix("2026-") == true, "\(renewed)")
        harness.loop.advanceTime(by: .milliseconds(800))
        #expect(try held(), "renewed past the first ttl")
        harness.loop.advanceTime(by: .milliseconds(1300))
        #expect(try !held(), "the renewed lease ran out")
        let late = try harness.send("{\"id\":3,\"op\":\"renew\",\"token\":\"job\",\"ttl\":1}\n", on: watcher)
        #expect(late.first?["error"]?["code"] == "not_held")
    }

    @Test("a wait times out at its deadline and not before; wait 0 answers busy at once")
    func waits() throws {
        let harness = ServiceHarness()
        let holder = try harness.connect(pid: 100)
        let waiter = try harness.connect(pid: 101)
        _ = try harness.send("{\"id\":1,\"op\":\"acquire\",\"lock\":\"w\"}\n", on: holder)
        let busy = try harness.send("{\"id\":1,\"op\":\"acquire\",\"lock\":\"w\",\"wait\":0}\n", on: waiter)
        #expect(busy.first?["error"]?["code"] == "busy")
        #expect(try harness.send("{\"id\":2,\"op\":\"acquire\",\"lock\":\"w\",\"wait\":1.5}\n", on: waiter).isEmpty)
        harness.loop.advanceTime(by: .milliseconds(1499))
        #expect(try harness.answers(on: waiter).isEmpty)
        harness.loop.advanceTime(by: .milliseconds(1))
        #expect(try harness.answers(on: waiter).first?["error"]?["code"] == "timeout")
    }
}
