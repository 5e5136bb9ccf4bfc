import Foundation
import Glibc
import LockClient

/// The round-trip floor: a bare Unix-socket server that answers each line with a line of the
/// size lockd would answer, one thread per connection. Nothing can serve a line faster here.
final class EchoFloor: @unchecked Sendable {
    let path: String
    private let listener: Int32

    init(path: String, answer: [UInt8]) throws {
        self.path = path
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        self.listener = listener
        let bound = UnixSocketAddress.with(path: path) { bind(listener, $0, $1) }
        guard bound == 0, listen(listener, 1024) == 0 else { throw POSIXError(.EADDRINUSE) }
        Thread.detachNewThread {
            while true {
                let client = accept(listener, nil, nil)
                guard client >= 0 else { return }
                Thread.detachNewThread { Self.serve(client, answer: answer) }
            }
        }
    }

    private static func serve(_ fd: Int32, answer: [UInt8]) {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard count > 0 else { break }
            let lines = buffer[..<count].count { $0 == UInt8(ascii: "\n") }
            for _ in 0..<lines { _ = answer.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } }
        }
        close(fd)
    }
}
