import Foundation
import LockProtocol

/// libFuzzer entry point: one request line. The decoder must answer every input with a request
/// or a `LockError` (never crash, hang or leak). lockd's own JSON parser must agree with
/// Foundation's `JSONDecoder` (the reference it replaced) on every input it has an opinion on, and
/// whatever it accepts must survive a round trip through lockd's serializer unchanged.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    checkRequestDecoding(bytes)
    let reference = try? JSONDecoder().decode(Reference.self, from: Data(bytes)).value
    let parsed: JSONValue
    do {
        parsed = try JSONValue.parse(bytes)
    } catch .syntax(let offset) {
        // Foundation also reads UTF-16 and UTF-32 (told by NUL bytes or a byte-order mark), and
        // a comma before `]` or `}`; RFC 8259 and lockd's lines have neither.
        guard let reference, !bytes.contains(0), !bytes.starts(with: [0xEF, 0xBB, 0xBF]),
            !bytes.starts(with: [0xFE, 0xFF]), !bytes.starts(with: [0xFF, 0xFE])
        else { return 0 }
        // Both Foundation readers also take a comma before `]` or `}`: judge the text without them.
        let stripped = removingTrailingCommas(bytes)
        switch Result(catching: { () throws(JSONParseError) in try JSONValue.parse(stripped) }) {
        case .success(let value):
            precondition(same(value, reference), "read \(value) where Foundation reads \(reference)")
        case .failure(.syntax):
            // JSONDecoder reads strings lazily and never checks one it does not use, such as the
            // value of a member named twice (`{"a":"x","a":"\g"}`); JSONSerialization reads
            // every byte, so it referees.
            precondition(
                (try? JSONSerialization.jsonObject(with: Data(stripped), options: [.fragmentsAllowed])) == nil,
                "refused at \(offset) what Foundation reads as \(reference)")
        case .failure:
            break  // a duplicate member or deep nesting, refused on purpose
        }
        return 0
    } catch {
        // Duplicate members and deep nesting are refused on purpose; Foundation keeps one of the
        // duplicates and nests up to 512 levels.
        return 0
    }
    precondition(reference != nil, "accepted \(parsed), which Foundation refuses")
    precondition(same(parsed, reference!), "read \(parsed) where Foundation reads \(reference!)")
    let again = try? JSONValue.parse(Array(parsed.serialized.utf8))
    precondition(again == parsed, "serializer round trip changed \(parsed) into \(String(describing: again))")
    return 0
}

/// `Request.decode` reads members straight from the bytes; whatever it makes of a line must agree
/// with the parsed object: a request only from an object, with that object's id, and an error
/// naming an id only when the object has that id.
private func checkRequestDecoding(_ bytes: UnsafeBufferPointer<UInt8>) {
    let object = try? JSONValue.parse(bytes)
    let objectID = object?["id"].flatMap(RequestID.init)
    do {
        let request = try Request.decode(bytes)
        precondition(
            objectID == request.id, "decoded \(request) from a line whose object is \(String(describing: object))")
    } catch {
        precondition(
            error.id == nil || error.id == objectID,
            "error id \(String(describing: error.id)) for \(String(describing: object))")
        if object == nil { precondition(error.id == nil, "an id from a line that is not JSON") }
    }
}

/// The text without each comma that is followed, after whitespace, by `]` or `}` (outside strings).
private func removingTrailingCommas(_ bytes: UnsafeBufferPointer<UInt8>) -> [UInt8] {
    var out: [UInt8] = []
    var inString = false
    var escaped = false
    for (index, byte) in bytes.enumerated() {
        if inString {
            if escaped {
                escaped = false
            } else if byte == UInt8(ascii: "\\") {
                escaped = true
            } else if byte == UInt8(ascii: "\"") {
                inString = false
            }
        } else if byte == UInt8(ascii: "\"") {
            inString = true
        } else if byte == UInt8(ascii: ",") {
            let next = bytes[(index + 1)...].first { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }
            if next == UInt8(ascii: "]") || next == UInt8(ascii: "}") { continue }
        }
        out.append(byte)
    }
    return out
}

/// Whether two values are the same JSON. Members are compared sorted, since Foundation's decoder
/// keeps no order. JSON has one number type, so an int and a double are compared by value. Beyond
/// 2^53 a double has no exact integer, and a text with a fraction or exponent there has no one
/// right reading (Foundation even truncates `-88888888888882888.44` to an int), so numbers that
/// large need only agree to a double's precision; smaller ints must be equal exactly.
private func same(_ lhs: JSONValue, _ rhs: JSONValue) -> Bool {
    switch (lhs, rhs) {
    case (.int(let left), .int(let right)) where left.magnitude <= 1 << 53 && right.magnitude <= 1 << 53:
        return left == right
    case (.int, .int), (.int, .double), (.double, .int):
        let (left, right) = (lhs.number!, rhs.number!)
        let magnitude = max(abs(left), abs(right))
        return left == right || (magnitude > 0x1p53 && abs(left - right) <= magnitude * 0x1p-50)
    case (.array(let left), .array(let right)):
        return left.count == right.count && zip(left, right).allSatisfy(same)
    case (.object(let left), .object(let right)):
        let (sortedLeft, sortedRight) = (left.sorted { $0.key < $1.key }, right.sorted { $0.key < $1.key })
        return sortedLeft.count == sortedRight.count
            && zip(sortedLeft, sortedRight).allSatisfy { $0.key == $1.key && same($0.value, $1.value) }
    default:
        return lhs == rhs
    }
}

/// Foundation's reading of a JSON text, as a `JSONValue`: the decoder lockd used before its own.
private struct Reference: Decodable {
    let value: JSONValue

    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    init(from decoder: any Decoder) throws {
        if let object = try? decoder.container(keyedBy: AnyKey.self) {
            value = .object(
                try object.allKeys.map { ($0.stringValue, try object.decode(Reference.self, forKey: $0).value) })
            return
        }
        if var array = try? decoder.unkeyedContainer() {
            var elements: [JSONValue] = []
            while !array.isAtEnd { elements.append(try array.decode(Reference.self).value) }
            value = .array(elements)
            return
        }
        let single = try decoder.singleValueContainer()
        if single.decodeNil() {
            value = .null
        } else if let bool = try? single.decode(Bool.self) {
            value = .bool(bool)
        } else if let integer = try? single.decode(Int64.self) {
            value = .int(integer)
        } else if let double = try? single.decode(Double.self) {
            value = .double(double)
        } else {
            value = .string(try single.decode(String.self))
        }
    }
}

@_silgen_name("LLVMFuzzerRunDriver")
private func runDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ body: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

/// SwiftPM links an executable's entry point as `<module>_main`; hand it to libFuzzer's driver.
@_cdecl("RequestFuzzer_main")
public func fuzzerMain(
    _ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
) -> CInt {
    var count = argc
    var arguments = argv
    return runDriver(&count, &arguments) { data, size in fuzz(data, size) }
}
