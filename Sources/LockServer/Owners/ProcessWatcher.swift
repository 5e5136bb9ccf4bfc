import CLockSupport
import Dispatch
import Glibc

/// Watches one process through a pidfd, which, unlike a pid, cannot be fooled by pid reuse.
///
/// The Dispatch source reads a duplicate of the pidfd and closes it when it fires, while the
/// original stays open until ``stop()`` so that ``hasExited`` keeps answering in between.
final class ProcessWatcher: ProcessWatch {
    let pid: Int32
    /// The process's start time (proc(5) field 22), read after the pidfd was opened; persisted
    /// with its holds so that a restart can tell the process from a later one with its pid.
    let startTime: UInt64?
    private let pidfd: Int32
    private let source: any DispatchSourceRead
    private var stopped = false

    /// Opens a pidfd for `pid` and calls `onExit` (on a Dispatch queue) when the process exits.
    init(pid: Int32, onExit: @escaping @Sendable () -> Void) throws(WatchError) {
        let fd = lockd_pidfd_open(pid)
        guard fd >= 0 else { throw WatchError(pid: pid, errno: errno) }
        let sourceFD = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        guard sourceFD >= 0 else {
            let code = errno
            close(fd)
            throw WatchError(pid: pid, errno: code)
        }
        self.pid = pid
        self.pidfd = fd
        startTime = ProcFS.startTime(of: pid)
        source = DispatchSource.makeReadSource(fileDescriptor: sourceFD, queue: .global())
        source.setEventHandler { [source] in
            // A pidfd stays readable once the process is gone: fire once.
            source.cancel()
            onExit()
        }
        source.setCancelHandler { close(sourceFD) }
        source.activate()
    }

    deinit { stop() }

    /// Whether the process has exited (even if the exit was not delivered yet).
    var hasExited: Bool { !stopped && lockd_pidfd_exited(pidfd) != 0 }

    func stop() {
        guard !stopped else { return }
        stopped = true
        source.cancel()
        close(pidfd)
    }

    struct WatchError: Error {
        var pid: Int32
        var errno: Int32
    }
}
