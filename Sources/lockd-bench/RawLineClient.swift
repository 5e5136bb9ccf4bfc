import Glibc
import LockClient

/// The lightest client the harness can make: requests as prepared bytes, answers read up to
/// their line end and checked for a byte string, no JSON. Every server in the comparison (bare
/// echo, lockd, redis-server) is driven by this same code. It borrows the socket of a
/// `LockConnection`, which connects and closes it, and does its own reading.
final class RawLineClient {
    private let connection: LockConnection
    private var fd: Int32 { connection.fd }
    private var buffer = [UInt8](repeating: 0, count: 4096)
    private var start = 0
    private var end = 0

    init?(path: String) {
        guard let connection = try? LockConnection(path: path) else { return nil }
        self.connection = connection
    }

    /// Sends `request` and reads one answer line; returns whether it contains `expected`.
    @discardableResult
    func roundTrip(_ request: [UInt8], expect expected: [UInt8]) -> Bool {
        var sent = 0
        while sent < request.count {
            let count = request[sent...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard count > 0 else { return false }
            sent += count
        }
        return readLine(containing: expected)
    }

    /// Writes `bytes` (several request lines, pipelined) without waiting for answers.
    func send(_ bytes: [UInt8]) -> Bool {
        var sent = 0
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard count > 0 else { return false }
            sent += count
        }
        return true
    }

    /// Reads `count` answer lines; returns how many contained `expected`.
    func receive(_ count: Int, expect expected: [UInt8]) -> Int {
        var matched = 0
        for _ in 0..<count where readLine(containing: expected) { matched += 1 }
        return matched
    }

    private func readLine(containing expected: [UInt8]) -> Bool {
        while true {
            if let newline = buffer[start..<end].firstIndex(of: UInt8(ascii: "\n")) {
                // A plain scan, not the generic `firstRange(of:)`: the harness must cost as little for
                // an 80-byte lockd answer as for redis's 5 bytes.
                let matches = buffer[start..<newline].withUnsafeBytes { line in
                    expected.withUnsafeBytes { needle in Self.contains(line, needle) }
                }
                start = newline + 1
                return matches
            }
            if start == end {
                start = 0
                end = 0
            }
            if end == buffer.count {
                buffer.replaceSubrange(0..<start, with: [])
                end -= start
                start = 0
                buffer += [UInt8](repeating: 0, count: 4096)
            }
            let count = buffer[end...].withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard count > 0 else { return false }
            end += count
        }
    }

    private static func contains(_ haystack: UnsafeRawBufferPointer, _ needle: UnsafeRawBufferPointer) -> Bool {
        guard needle.count <= haystack.count else { return false }
        guard let first = needle.first else { return true }
        var index = 0
        while index <= haystack.count - needle.count {
            if haystack[index] == first,
                memcmp(haystack.baseAddress! + index, needle.baseAddress!, needle.count) == 0
            {
                return true
            }
            index += 1
        }
        return false
    }
}
