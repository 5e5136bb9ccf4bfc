import ArgumentParser
import CLockSupport
import Glibc
import LockClient
import LockCore
import LockProtocol
import LockctlCore

/// The process that owns a hold taken by flock's FD form (`lflock 9`) for as long as the open
/// file description behind the descriptor lives (`DescriptorLock`). Started by lflock, never by
/// hand: it inherits the descriptor, gets the lock with itself as the pid owner, tells lflock
/// through `--report`, leaves the session and terminal, and waits for the description's marker to
/// go away. Its exit is the release. SIGTERM (from `lflock -u`) ends it too.
struct FlockKeeper: DaemonCommand {
    static let configuration = CommandConfiguration(
        commandName: "flock-keeper", abstract: "Keeps a hold of lflock's FD form (started by lflock).",
        shouldDisplay: false)

    @Option(help: "The descriptor whose open file description owns the hold.") var descriptor: Int32
    @Option(help: "The offset of that description's marker.") var marker: Int
    @Option(help: "Where to write one byte once the lock is held.") var report: Int32
    @OptionGroup var wait: WaitOptions
    @OptionGroup var global: GlobalOptions
    @ParentCommand var lockctl: LockCtl

    func run() throws {
        let parent = getppid()
        let probe = try DescriptorLock.openAgain(descriptor)
        // Every final close of the file wakes the keeper to look for the marker; without read
        // access to the file (so no inotify) it looks twice a second.
        let closes = lockd_close_watch("/proc/self/fd/\(descriptor)")
        try hold(lock: DescriptorLock.lockName(of: descriptor))
        lockd_detach()
        // lflock died (Ctrl-C) while the lock was being granted: nobody was told it is held.
        guard getppid() == parent else { throw ExitCode(Exit.software) }
        // A process loses its process locks on a file when it closes any descriptor of it: the
        // inherited ones go first.
        lockd_close_descriptors([probe, closes, report], 3)
        let writable = fcntl(probe, F_GETFL) & O_ACCMODE != O_RDONLY
        let kind = Int32(writable ? LOCKD_RANGE_WRITE : LOCKD_RANGE_READ)
        guard lockd_range_set(probe, 0, kind, DescriptorLock.Marker.keeper(of: marker, wait.spec.mode)) == 0 else {
            throw ExitCode(Exit.software)
        }
        var done: UInt8 = 1
        _ = write(report, &done, 1)
        close(report)
        var lock = lockd_range()
        while lockd_range_test(probe, (marker), 1, &lock) == 1 {
            if closes >= 0 {
                var events = [UInt8](repeating: 0, count: 4096)
                _ = events.withUnsafeMutableBytes { read(closes, $0.baseAddress, $0.count) }
            } else {
                usleep(500_000)
            }
        }
    }

    /// Gets the lock with this process as its owner; the connection closes on return (a pid
    /// owner's hold outlives it, and lockd restarts).
    private func hold(lock: LockName) throws(ExitCode) {
        let connection = try connect("flock")
        _ = try acquireInterruptibly(
            connection, name: lock, owner: .pid(getpid()), wait: wait.spec, signals: TerminationSignals())
    }
}
