import CLockSupport
import Foundation
import Glibc
import LockClient

/// The floor of a single-threaded server: one epoll loop that answers each line with a line of
/// the size lockd would answer, and does nothing else. redis-server and lockd each serve all
/// clients from one loop too, so this bounds what either design can reach on this machine, and
/// the CPU it takes per pair is the part no single-loop server can avoid.
final class EpollFloor: @unchecked Sendable {
    let path: String
    /// The loop thread's id, for its CPU counters under /proc/self/task.
    private(set) var threadID: Int32 = 0

    init(path: String, answer: [UInt8]) throws {
        self.path = path
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        let bound = UnixSocketAddress.with(path: path) { bind(listener, $0, $1) }
        guard bound == 0, listen(listener, 1024) == 0 else { throw POSIXError(.EADDRINUSE) }
        let started = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            self.threadID = lockd_gettid()
            started.signal()
            Self.run(listener: listener, answer: answer)
        }
        started.wait()
    }

    private static func run(listener: Int32, answer: [UInt8]) {
        let epoll = epoll_create1(0)
        func watch(_ fd: Int32) {
            var event = epoll_event()
            event.events = EPOLLIN.rawValue
            event.data.fd = fd
            epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event)
        }
        watch(listener)
        var events = [epoll_event](repeating: epoll_event(), count: 256)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let ready = events.withUnsafeMutableBufferPointer { epoll_wait(epoll, $0.baseAddress, 256, -1) }
            for index in 0..<max(0, Int(ready)) {
                let fd = events[index].data.fd
                if fd == listener {
                    while case let client = accept(listener, nil, nil), client >= 0 {
                        _ = fcntl(client, F_SETFL, fcntl(client, F_GETFL) | O_NONBLOCK)
                        watch(client)
                    }
                    continue
                }
                let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if count == 0 || (count < 0 && errno != EAGAIN) {
                    close(fd)
                    continue
                }
                let lines = buffer[..<max(0, count)].count { $0 == UInt8(ascii: "\n") }
                for _ in 0..<lines { _ = answer.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } }
            }
        }
    }
}
