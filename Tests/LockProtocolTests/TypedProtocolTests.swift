import LockCore
import LockProtocol
import Testing

@Suite("the protocol typed both ways")
struct TypedProtocolTests {
    static let lock = LockName("db")!

    @Test(
        "every request encodes to a line that decodes to the same request",
        arguments: [
            Operation.hello, .ping,
            .acquire(lock: lock, mode: .shared, wait: 2.5, owner: .session),
            .acquire(lock: lock, mode: .exclusive, wait: nil, owner: .pid(42)),
            .acquire(lock: lock, mode: .exclusive, wait: 0, owner: .token("t", ttl: 30)),
            .acquire(lock: lock, mode: .exclusive, wait: 1e300, owner: .token("t", ttl: nil)),
            .release(lock: lock, owner: .token("t", ttl: nil), all: true),
            .renew(token: "t", ttl: 0.001), .shield(lock: lock, owner: .pid(7), on: false),
            .breakLock(lock: lock), .status(lock: nil), .status(lock: lock), .cancel(request: .string("x")),
        ])
    func roundTrip(_ operation: Operation) throws {
        for id in [RequestID.int(7), .string("a\"b"), .double(1.5)] {
            let request = Request(id: id, operation: operation)
            let line = Array(request.json.serialized.utf8)
            #expect(try Request.decode(line) == request)
        }
    }

    @Test("answers built by lockd read back typed")
    func answers() throws {
        let grant = Grant(lock: Self.lock, mode: .shared, count: 3, fence: 9_007_199_254_740_991)
        guard case .answer(let granted) = try ServerMessage(Response.ok(.int(1), Response.grant(grant))) else {
            Issue.record("not an answer")
            return
        }
        #expect(granted.id == .int(1) && granted.isOK && granted.grant == grant)

        for code in [LockError.Code.busy, .notHeld, .tooLarge, .shuttingDown, .limit, .denied] {
            let error = LockError(code, "why")
            guard case .answer(let failed) = try ServerMessage(Response.error(.string("x"), error)) else {
                Issue.record("not an answer")
                return
            }
            #expect(failed.error == error && failed.id == .string("x"))
        }
        let revoked = try ServerMessage(Response.revoked(lock: Self.lock, owner: .token("t"), reason: .expired))
        guard case .revoked(let revocation) = revoked else {
            Issue.record("not an event")
            return
        }
        #expect(revocation.lock == Self.lock && revocation.reason == .expired)
    }

    @Test("an error code this client does not know still reads as a failure")
    func unknownCode() throws {
        let line = Array(#"{"id":1,"ok":false,"error":{"code":"quota","message":"later"}}"#.utf8)
        guard case .answer(let answer) = try ServerMessage(line: line) else {
            Issue.record("not an answer")
            return
        }
        #expect(!answer.isOK && answer.error?.message == "quota: later")
    }

    @Test(
        "lines that are not protocol v1 are refused", arguments: ["[]", "{}", "{\"id\":1}", "{\"event\":\"x\"}", "no"])
    func refused(_ text: String) {
        #expect(throws: ServerMessageError.self) { try ServerMessage(line: Array(text.utf8)) }
    }
}
