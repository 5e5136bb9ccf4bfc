import LockCore
import LockProtocol
import Testing

@Suite struct RequestDecodingTests {
    private func decode(_ text: String) -> Result<Request, RequestDecodingError> {
        Result { () throws(RequestDecodingError) in try Request.decode(Array(text.utf8)) }
    }

    private func failure(_ text: String) -> RequestDecodingError? {
        if case .failure(let error) = decode(text) { return error }
        return nil
    }

    @Test func readsAnAcquireWithItsOwnerAndIgnoresUnknownMembers() throws {
        let request = try decode(
            #"{"op":"acquire","x-trace":[1,{"a":null}],"id":"q1","lock":"db","mode":"shared","wait":1.5,"owner":{"token":"t","ttl":30}}"#
        ).get()
        #expect(request.id == .string("q1"))
        #expect(
            request.operation
                == .acquire(lock: LockName("db")!, mode: .shared, wait: 1.5, owner: .token("t", ttl: 30)))
    }

    @Test func refusesAMemberNamedTwiceAndKeepsTheIdOutOfIt() throws {
        let twice = try #require(failure(#"{"id":1,"op":"break","lock":"a","lock":"b"}"#))
        #expect(twice.id == nil)
        #expect(twice.error.code == .invalid)
        #expect(twice.error.message.contains("\"lock\" appears twice"), "\(twice.error.message)")
        let unknownTwice = try #require(failure(#"{"id":1,"op":"ping","x":1,"x":2}"#))
        #expect(unknownTwice.error.message.contains("\"x\" appears twice"))
        let nested = try #require(failure(#"{"id":1,"op":"release","lock":"a","owner":{"pid":1,"pid":2}}"#))
        #expect(nested.error.message.contains("\"pid\" appears twice"))
    }

    @Test(arguments: [
        ("{\"id\":1,\"op\":\"ping\"", "not valid JSON"), ("[1,2]", "must be a JSON object"),
        ("\"ping\"", "must be a JSON object"), ("{\"op\":\"ping\"}", "needs an \"id\""),
        ("{\"id\":true,\"op\":\"ping\"}", "needs an \"id\""), ("{\"id\":1,\"op\":\"ping\",}", "not valid JSON"),
    ])
    func explainsWhatIsWrong(text: String, message: String) throws {
        let error = try #require(failure(text))
        #expect(error.error.message.contains(message), "\(error.error.message)")
    }

    @Test func keepsTheIdOfAValidObjectWithABadField() throws {
        let error = try #require(failure(#"{"id":7,"op":"acquire","lock":"bad name"}"#))
        #expect(error.id == .int(7))
        #expect(error.error.message.contains("invalid lock name"))
        #expect(try decode(#"{"id":1.0,"op":"cancel","request":1e0}"#).get().operation == .cancel(request: .int(1)))
    }
}
