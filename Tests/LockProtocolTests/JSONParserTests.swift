import LockProtocol
import Testing

@Suite struct JSONParserTests {
    private func parse(_ text: String) throws(JSONParseError) -> JSONValue {
        try JSONValue.parse(Array(text.utf8))
    }

    @Test func readsARequestLineWithMembersInOrder() throws {
        let value = try parse(#" {"id": 7, "op":"acquire" ,"lock":"db","owner":{"pid":42},"wait":0.5} "#)
        guard case .object(let members) = value else {
            Issue.record("not an object: \(value)")
            return
        }
        #expect(members.map(\.key) == ["id", "op", "lock", "owner", "wait"])
        #expect(value["id"] == .int(7))
        #expect(value["owner"]?["pid"] == .int(42))
        #expect(value["wait"] == .double(0.5))
    }

    @Test(arguments: [
        ("0", JSONValue.int(0)), ("-0", .int(0)), ("9223372036854775807", .int(.max)),
        ("-9223372036854775808", .int(.min)), ("1.0", .int(1)), ("1e2", .int(100)), ("-2.5E-1", .double(-0.25)),
        ("9223372036854775808", .double(9_223_372_036_854_775_808)), ("1e300", .double(1e300)),
    ])
    func readsNumbers(text: String, expected: JSONValue) throws {
        #expect(try parse(text) == expected)
    }

    @Test func readsEscapesAndSurrogatePairs() throws {
        #expect(try parse(#""a\"b\\c\/d\b\f\n\r\t""#) == .string("a\"b\\c/d\u{8}\u{c}\n\r\t"))
        #expect(try parse(#""\u00e9\u4e2d\ud83d\ude00""#) == .string("é中😀"))
        #expect(try parse("\"é😀\"") == .string("é😀"))
        #expect(try parse("[true,false,null,[],{}]") == .array([true, false, .null, .array([]), .object([])]))
    }

    @Test(arguments: [
        "", " ", "{", "}", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "01", "-", "1.", ".5", "1e", "+1", "0x10",
        "NaN", "Infinity", "1e400", "tru", "nul", "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\ud800\"",
        "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"a\u{1}b\"", "[1] x", "{} {}", "'a'", "[1 2]",
    ])
    func refusesWhatRFC8259Refuses(text: String) {
        #expect(throws: JSONParseError.self) { try parse(text) }
    }

    @Test func refusesInvalidUTF8() {
        #expect(throws: JSONParseError.self) { try JSONValue.parse([0x22, 0xC3, 0x28, 0x22]) }
        #expect(throws: JSONParseError.self) { try JSONValue.parse([0x22, 0x5C, 0x6E, 0xFF, 0x22]) }
    }

    @Test func refusesDuplicateMembersAtAnySize() {
        #expect(throws: JSONParseError.duplicateMember("lock")) {
            try parse(#"{"lock":"a","op":"break","lock":"b"}"#)
        }
        let many = (0..<40).map { "\"k\($0)\":\($0)" }.joined(separator: ",")
        #expect(throws: JSONParseError.duplicateMember("k3")) { try parse("{\(many),\"k3\":0}") }
        #expect(throws: Never.self) { try parse("{\(many)}") }
    }

    @Test func refusesDeepNestingWithoutRecursingFurther() {
        let depth = 100_000
        let deep = String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
        #expect(throws: JSONParseError.tooDeep) { try parse(deep) }
        let allowed = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        #expect(throws: Never.self) { try parse(allowed) }
    }

    @Test func serializedTextReadsBackTheSameValue() throws {
        let value: JSONValue = .object([
            ("id", .string("q\"\\\u{1}é")), ("n", .int(.min)), ("d", .double(0.1)), ("big", .double(1.5e300)),
            ("a", .array([.null, true, .object([])])),
        ])
        #expect(try parse(value.serialized) == value)
    }
}
