import CLockSupport
import Dispatch
import Glibc

/// Watches one process through a pidfd, which, unlike a pid, cannot be fooled by pid reuse.
final class ProcessWatcher {
    let pid: Int32
    private let pidfd: Int32
    private let source: any DispatchSourceRead

    /// Opens a pidfd for `pid` and calls `onExit` (on a Dispatch queue) when the process exits.
    init(pid: Int32, onExit: @escaping @Sendable () -> Void) throws(WatchError) {
        let fd = lockd_pidfd_open(pid)
        guard fd >= 0 else { throw WatchError(pid: pid, errno: errno) }
        self.pid = pid
        self.pidfd = fd
        source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: .global())
        source.setEventHandler { [source] in
            source.cancel()
            onExit()
        }
        source.setCancelHandler { close(fd) }
        source.activate()
    }

    /// Whether the process has exited (even if the exit was not delivered yet).
    var hasExited: Bool { lockd_pidfd_exited(pidfd) != 0 }

    func stop() { source.cancel() }

    struct WatchError: Error {
        var pid: Int32
        var errno: Int32
    }
}
