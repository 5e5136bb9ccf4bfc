import ArgumentParser
import CLockSupport
import Glibc
import LockClient
import LockCore
import LockProtocol

/// Runs CMD under lockctl's watch and returns the exit status lockctl should end with.
///
/// - Shielded: CMD runs in a process group of its own (so a terminal's Ctrl-C skips it) and every
///   SIGINT/SIGTERM/SIGHUP lockctl receives is held back until CMD ends; then lockctl exits
///   128+the first of them.
/// - Not shielded: CMD also gets a group of its own but takes over the terminal's foreground, so
///   a terminal's signals reach it once, directly; signals sent to lockctl are forwarded once.
///
/// Either way CMD dies with lockctl (PR_SET_PDEATHSIG), so it never outlives the hold.
struct ChildProcess {
    let arguments: [String]
    let shielded: Bool

    func run(signals: TerminationSignals, connection: LockConnection?, lockName: String?) throws(ExitCode) -> Int32 {
        let tty = shielded ? -1 : lockd_foreground_tty()
        let pid = try spawn(tty: tty)
        defer { lockd_reclaim_tty(tty) }
        let pidfd = lockd_pidfd_open(pid)
        var deferred: Int32?
        var watched = connection
        while true {
            let ready = waitReadable([pidfd, signals.fd, watched?.fd ?? -1])
            if ready[1] {
                for received in signals.drain() {
                    if shielded {
                        deferred = deferred ?? received.signal
                    } else {
                        kill(pid, received.signal)
                    }
                }
            }
            if ready[2], let connection = watched {
                watched = watchDaemon(connection, lockName: lockName)
            }
            if ready[0] || pidfd < 0 { break }
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        if let deferred { return 128 + deferred }
        let exitStatus = (status >> 8) & 0xff
        let termination = status & 0x7f
        return termination == 0 ? exitStatus : 128 + termination
    }

    private func spawn(tty: Int32) throws(ExitCode) -> pid_t {
        var cStrings = arguments.map { strdup($0) }
        cStrings.append(nil)
        defer { for pointer in cStrings { free(pointer) } }
        let options = lockd_spawn_options(new_process_group: 1, parent_death_signal: SIGKILL, foreground_tty: tty)
        let pid = cStrings.withUnsafeBufferPointer { lockd_spawn(arguments[0], $0.baseAddress, options) }
        guard pid > 0 else {
            let code = errno
            printError("cannot run \(arguments[0]): \(String(cString: strerror(code)))")
            throw ExitCode(code == ENOENT ? 127 : 126)
        }
        return pid
    }

    /// Reports what the daemon pushes while CMD runs; returns `nil` once the connection is gone.
    private func watchDaemon(_ connection: LockConnection, lockName: String?) -> LockConnection? {
        do {
            while let message = try connection.readMessage(timeout: 0) {
                if case .revoked(let revocation) = message {
                    let reason = revocation.reason.rawValue
                    printError(
                        "warning: lock \"\(lockName ?? "?")\" was taken away (\(reason)); the command goes on unprotected"
                    )
                }
                if !connection.hasBufferedMessage { break }
            }
            return connection
        } catch {
            printError("warning: lost the connection to lockd; the lock \"\(lockName ?? "?")\" is no longer held")
            return nil
        }
    }
}
