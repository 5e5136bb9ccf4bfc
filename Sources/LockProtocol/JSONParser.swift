/// Why a text is not the JSON lockd accepts.
public enum JSONParseError: Error, Sendable, Equatable {
    /// Not JSON by RFC 8259: the byte offset where reading failed.
    case syntax(offset: Int)
    /// An object names the same member twice; RFC 8259 leaves the meaning open, so lockd refuses
    /// rather than guess which `"lock"` a request meant.
    case duplicateMember(String)
    /// Nested deeper than `JSONParser.maximumDepth`; no protocol line comes close.
    case tooDeep
}

/// A strict RFC 8259 reader for one protocol line, straight from the received bytes.
///
/// It replaced Foundation's `JSONDecoder`, which took 37% of lockd's time under load (see
/// docs/performance.md). The fuzz target checks it against that decoder on every input.
/// Numbers read as JSON texts with one number type should: digits only, or any integral value
/// within Int64, give `.int` (so `1.0` and `1` are the same id); everything else `.double`.
struct JSONParser: ~Copyable {
    /// Deeper nesting is refused, which also bounds the recursion.
    static let maximumDepth = 64

    private let bytes: UnsafeBufferPointer<UInt8>
    private var index = 0
    private var depth = 0

    private init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    /// Reads `bytes` as one JSON value, with only whitespace around it.
    static func parse(_ bytes: UnsafeBufferPointer<UInt8>) throws(JSONParseError) -> JSONValue {
        var parser = JSONParser(bytes)
        parser.skipWhitespace()
        let value = try parser.value()
        parser.skipWhitespace()
        guard parser.index == bytes.count else { throw .syntax(offset: parser.index) }
        return value
    }

    private var current: UInt8? { index < bytes.count ? bytes[index] : nil }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    private mutating func value() throws(JSONParseError) -> JSONValue {
        guard let byte = current else { throw .syntax(offset: index) }
        switch byte {
        case UInt8(ascii: "{"): return try object()
        case UInt8(ascii: "["): return try array()
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw .syntax(offset: index)
        }
    }

    private mutating func literal(_ word: StaticString) throws(JSONParseError) {
        let count = word.utf8CodeUnitCount
        guard bytes.count - index >= count else { throw .syntax(offset: index) }
        for offset in 0..<count where bytes[index + offset] != word.utf8Start[offset] {
            throw .syntax(offset: index + offset)
        }
        index += count
    }

    private mutating func enter() throws(JSONParseError) {
        depth += 1
        if depth > Self.maximumDepth { throw .tooDeep }
        index += 1
        skipWhitespace()
    }

    /// Reads `bytes` as one JSON object with only whitespace around it, handing each member to
    /// `visit` as it is read instead of building the object (the request path). Duplicate
    /// members are for `visit` to refuse.
    static func parseMembers(
        _ bytes: UnsafeBufferPointer<UInt8>, _ visit: (String, JSONValue) throws(JSONParseError) -> Void
    ) throws(JSONParseError) {
        var parser = JSONParser(bytes)
        parser.skipWhitespace()
        guard parser.current == UInt8(ascii: "{") else { throw .syntax(offset: parser.index) }
        try parser.members(visit)
        parser.skipWhitespace()
        guard parser.index == bytes.count else { throw .syntax(offset: parser.index) }
    }

    private mutating func object() throws(JSONParseError) -> JSONValue {
        var members: [(key: String, value: JSONValue)] = []
        members.reserveCapacity(8)
        // Protocol objects have a handful of members, so a scan finds duplicates fastest; a set
        // takes over for large objects, which only a hostile line would send.
        var seen: Set<String>?
        try self.members { key, value throws(JSONParseError) in
            if members.count >= 16 {
                if seen == nil { seen = Set(members.map(\.key)) }
                if seen!.insert(key).inserted == false { throw .duplicateMember(key) }
            } else if members.contains(where: { $0.key == key }) {
                throw .duplicateMember(key)
            }
            members.append((key, value))
        }
        return .object(members)
    }

    /// Reads an object from its opening brace, handing over each member.
    private mutating func members(
        _ visit: (String, JSONValue) throws(JSONParseError) -> Void
    ) throws(JSONParseError) {
        try enter()
        defer { depth -= 1 }
        if current == UInt8(ascii: "}") {
            index += 1
            return
        }
        while true {
            guard current == UInt8(ascii: "\"") else { throw .syntax(offset: index) }
            let key = try string()
            skipWhitespace()
            guard current == UInt8(ascii: ":") else { throw .syntax(offset: index) }
            index += 1
            skipWhitespace()
            try visit(key, try value())
            if try isClosed(by: UInt8(ascii: "}")) { return }
        }
    }

    private mutating func array() throws(JSONParseError) -> JSONValue {
        try enter()
        defer { depth -= 1 }
        var elements: [JSONValue] = []
        if current == UInt8(ascii: "]") {
            index += 1
            return .array(elements)
        }
        while true {
            elements.append(try value())
            if try isClosed(by: UInt8(ascii: "]")) { return .array(elements) }
        }
    }

    /// After a member or an element: `true` past the closing bracket, `false` past a comma.
    private mutating func isClosed(by closing: UInt8) throws(JSONParseError) -> Bool {
        skipWhitespace()
        if current == closing {
            index += 1
            return true
        }
        guard current == UInt8(ascii: ",") else { throw .syntax(offset: index) }
        index += 1
        skipWhitespace()
        return false
    }

    /// Reads a string from its opening quote. Without escapes (the usual case) the bytes become
    /// the string in one copy, validated as UTF-8 unless they are all ASCII.
    private mutating func string() throws(JSONParseError) -> String {
        index += 1
        let start = index
        var ascii = true
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let content = UnsafeBufferPointer(rebasing: bytes[start..<index])
                index += 1
                if ascii { return String(decoding: content, as: UTF8.self) }
                guard let string = String(validating: content, as: UTF8.self) else { throw .syntax(offset: start) }
                return string
            }
            if byte == UInt8(ascii: "\\") { return try escapedString(from: start) }
            if byte < 0x20 { throw .syntax(offset: index) }
            ascii = ascii && byte < 0x80
            index += 1
        }
        throw .syntax(offset: index)
    }

    private mutating func escapedString(from start: Int) throws(JSONParseError) -> String {
        var utf8 = Array(bytes[start..<index])
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                guard let string = String(validating: utf8, as: UTF8.self) else { throw .syntax(offset: start) }
                index += 1
                return string
            case UInt8(ascii: "\\"):
                index += 1
                guard let escape = current else { throw .syntax(offset: index) }
                index += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(escape)
                case UInt8(ascii: "b"): utf8.append(0x08)
                case UInt8(ascii: "f"): utf8.append(0x0C)
                case UInt8(ascii: "n"): utf8.append(0x0A)
                case UInt8(ascii: "r"): utf8.append(0x0D)
                case UInt8(ascii: "t"): utf8.append(0x09)
                case UInt8(ascii: "u"): utf8.append(contentsOf: try unicodeEscape())
                default: throw .syntax(offset: index - 1)
                }
            case 0..<0x20:
                throw .syntax(offset: index)
            default:
                utf8.append(byte)
                index += 1
            }
        }
        throw .syntax(offset: index)
    }

    /// Reads the hex digits after `\u`, and a second escape when the first is a high surrogate;
    /// a lone surrogate is refused, since it is no character.
    private mutating func unicodeEscape() throws(JSONParseError) -> String.UTF8View {
        var scalar = try hexQuad()
        if (0xD800..<0xDC00).contains(scalar) {
            guard bytes.count - index >= 2, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u")
            else { throw .syntax(offset: index) }
            index += 2
            let low = try hexQuad()
            guard (0xDC00..<0xE000).contains(low) else { throw .syntax(offset: index - 4) }
            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
        }
        guard let unicode = Unicode.Scalar(scalar) else { throw .syntax(offset: index - 4) }
        return String(Character(unicode)).utf8
    }

    private mutating func hexQuad() throws(JSONParseError) -> UInt32 {
        guard bytes.count - index >= 4 else { throw .syntax(offset: index) }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw .syntax(offset: index)
            }
            value = value << 4 | UInt32(digit)
            index += 1
        }
        return value
    }

    private mutating func number() throws(JSONParseError) -> JSONValue {
        let start = index
        let negative = current == UInt8(ascii: "-")
        if negative { index += 1 }
        guard let first = current, isDigit(first) else { throw .syntax(offset: index) }
        // Accumulated negatively, so that Int64.min fits.
        var integer: Int64 = 0
        var overflow = false
        if first == UInt8(ascii: "0") {
            index += 1
        } else {
            while let byte = current, isDigit(byte) {
                let (times10, o1) = integer.multipliedReportingOverflow(by: 10)
                let (next, o2) = times10.subtractingReportingOverflow(Int64(byte - UInt8(ascii: "0")))
                overflow = overflow || o1 || o2
                integer = next
                index += 1
            }
        }
        var integral = true
        if current == UInt8(ascii: ".") {
            integral = false
            index += 1
            try digits()
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            integral = false
            index += 1
            if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { index += 1 }
            try digits()
        }
        if integral, !overflow {
            if negative { return .int(integer) }
            if integer != .min { return .int(-integer) }
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        guard let double = Double(text), double.isFinite else { throw .syntax(offset: start) }
        if let exact = Int64(exactly: double) { return .int(exact) }
        return .double(double)
    }

    private mutating func digits() throws(JSONParseError) {
        guard let byte = current, isDigit(byte) else { throw .syntax(offset: index) }
        while let byte = current, isDigit(byte) { index += 1 }
    }

    private func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
}
