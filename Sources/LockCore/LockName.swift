/// A validated lock name: 1–255 bytes of `[A-Za-z0-9._:/@+-]`.
public struct LockName: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The name as the client wrote it.
    public let rawValue: String

    /// Creates a name, or returns `nil` when `rawValue` breaks the naming rule.
    public init?(_ rawValue: String) {
        guard Self.isValid(rawValue) else { return nil }
        self.rawValue = rawValue
    }

    /// Whether `candidate` is a valid lock name.
    public static func isValid(_ candidate: String) -> Bool {
        let utf8 = candidate.utf8
        return (1...255).contains(utf8.count) && utf8.allSatisfy(isNameByte)
    }

    private static func isNameByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: ":"), UInt8(ascii: "/"),
            UInt8(ascii: "@"), UInt8(ascii: "+"), UInt8(ascii: "-"):
            return true
        default:
            return false
        }
    }

    public var description: String { rawValue }

    public static func < (lhs: LockName, rhs: LockName) -> Bool { lhs.rawValue < rhs.rawValue }
}
