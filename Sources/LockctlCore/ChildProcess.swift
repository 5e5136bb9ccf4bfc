import CLockSupport
import Glibc
import LockClient
import LockCore
import LockProtocol

/// How a command ended, and so how lockctl ends: with the same exit code, or by the same signal,
/// so that a calling shell sees what it would have seen without lockctl (a bash script stops on
/// Ctrl-C only when its foreground command died *by* SIGINT).
package enum CommandEnd: Equatable {
    case exited(Int32)
    case signaled(Int32)

    /// Ends lockctl the same way. Exiting directly skips argument-parser's error path, which
    /// builds a message by reflection: 2.7% of a `run` (docs/performance.md).
    package func finish() -> Never {
        switch self {
        case .exited(let code):
            exit(code)
        case .signaled(let signal):
            lockd_die_by_signal(signal)
            exit(128 + signal)
        }
    }
}

/// Runs CMD under lockctl's watch (docs/lockctl.md).
///
/// CMD stays in lockctl's process group, so the shell sees one job: it keeps the terminal (it may
/// prompt), and Ctrl-C and Ctrl-Z reach both.
/// - Shielded: CMD starts with SIGINT/SIGTERM/SIGHUP/SIGQUIT ignored; lockctl holds back every
///   SIGINT/SIGTERM/SIGHUP it receives and, once CMD has ended and the lock is released, dies by
///   the first of them.
/// - Not shielded: a signal from the terminal reaches CMD directly; one sent to lockctl alone is
///   forwarded, once.
/// - A CMD that stops (SIGSTOP, SIGTTIN, ...) stops lockctl too, as a shell's job would; when
///   lockctl is continued it continues CMD.
package struct ChildProcess {
    package let arguments: [String]
    package let shielded: Bool
    /// The connection CMD inherits (the hold then lasts while any process holding it lives).
    package var inherited: LockConnection? = nil
    /// Whether CMD dies with lockctl (PR_SET_PDEATHSIG), when it must not outlive the hold.
    package var diesWithLockctl = false
    /// What to do when the hold is taken away while CMD runs.
    package var onLost = LostPolicy.standard
    /// Why the hold was taken away (`break`, `expired`, `lost connection`), once it was.
    package private(set) var lost: String?

    package init(
        arguments: [String], shielded: Bool, inherited: LockConnection? = nil, diesWithLockctl: Bool = false,
        onLost: LostPolicy = .standard
    ) {
        self.arguments = arguments
        self.shielded = shielded
        self.inherited = inherited
        self.diesWithLockctl = diesWithLockctl
        self.onLost = onLost
    }

    package mutating func run(signals: TerminationSignals, connection: LockConnection?, lockName: String?)
        throws(ExitCode)
        -> CommandEnd
    {
        let children = lockd_signalfd(SIGCHLD, 0, 0)
        let pid = try spawn()
        let pidfd = lockd_pidfd_open(pid)
        var deferred: Int32?
        var reaped: Int32?
        var watched = connection
        // The second signal of the `--on-lost` policy, and when it is due.
        var escalation: (signal: Int32, at: Double)?
        while true {
            let timeout = escalation.map { Int32(max(0, ($0.at - LockConnection.monotonicSeconds()) * 1000)) + 1 } ?? -1
            let ready = waitReadable([pidfd, signals.fd, watched?.fd ?? -1, children], timeout: timeout)
            if let due = escalation, LockConnection.monotonicSeconds() >= due.at {
                kill(pid, due.signal)
                escalation = nil
            }
            if ready[1] {
                for received in signals.drain() {
                    if shielded {
                        deferred = deferred ?? received.signal
                    } else if !received.isFromTerminal {
                        kill(pid, received.signal)
                    }
                }
            }
            if ready[2], let connection = watched {
                watched = watchDaemon(connection, lockName: lockName)
                if lost != nil, case .signal(let first, let grace, let then) = onLost, !shielded, escalation == nil {
                    kill(pid, first)
                    escalation = then.map { ($0, LockConnection.monotonicSeconds() + grace) }
                    if escalation == nil { escalation = (0, .infinity) }  // sent once; nothing follows
                }
            }
            if ready[3] {
                drainSignalfd(children)
                reaped = followStop(of: pid)
                if reaped != nil { break }
            }
            if ready[0] || pidfd < 0 { break }
        }
        var status: Int32 = reaped ?? 0
        while reaped == nil, waitpid(pid, &status, 0) < 0, errno == EINTR {}
        if let deferred { return .signaled(deferred) }
        let termination = status & 0x7f
        return termination == 0 ? .exited((status >> 8) & 0xff) : .signaled(termination)
    }

    /// A stopped CMD would otherwise leave lockctl waiting with the lock held and nothing shown:
    /// lockctl says so and stops too, so the shell reports the job stopped; once continued, it
    /// continues CMD.
    /// - Returns: CMD's wait status when it has ended meanwhile (and is reaped now).
    private func followStop(of pid: pid_t) -> Int32? {
        var status: Int32 = 0
        guard waitpid(pid, &status, WNOHANG | WUNTRACED) == pid else { return nil }
        guard status & 0xff == 0x7f else { return status }
        // Ctrl-Z stopped lockctl too, and it only runs again once continued: look whether CMD
        // is still stopped before stopping again.
        guard lockd_process_state(pid) == CChar(UInt8(ascii: "T")) else { return nil }
        let signal = (status >> 8) & 0xff
        printError(
            "\(arguments[0]) (pid \(pid)) stopped (\(signalName(signal))); the lock stays held; "
                + "lockctl stops too (continue with fg or kill -CONT \(getpid()))")
        kill(getpid(), SIGSTOP)
        kill(pid, SIGCONT)
        return nil
    }

    private func spawn() throws(ExitCode) -> pid_t {
        var cStrings = arguments.map { strdup($0) }
        cStrings.append(nil)
        defer { for pointer in cStrings { free(pointer) } }
        let options = lockd_spawn_options(
            ignore_termination: shielded ? 1 : 0, inherit_fd: inherited?.fd ?? -1,
            parent_death_signal: diesWithLockctl ? SIGKILL : 0)
        let pid = cStrings.withUnsafeBufferPointer { lockd_spawn(arguments[0], $0.baseAddress, options) }
        guard pid > 0 else {
            let code = errno
            printError("cannot run \(arguments[0]): \(String(cString: strerror(code)))")
            throw ExitCode(code == ENOENT ? 127 : 126)
        }
        return pid
    }

    /// Reads what the daemon pushes while CMD runs, noting a lost hold; returns `nil` once the
    /// connection is gone (and the hold with it).
    private mutating func watchDaemon(_ connection: LockConnection, lockName: String?) -> LockConnection? {
        do {
            while let message = try connection.readMessage(timeout: 0) {
                if case .revoked(let revocation) = message, lockName == nil || revocation.lock.rawValue == lockName {
                    noteLost(revocation.reason.rawValue, lockName: lockName)
                }
                if !connection.hasBufferedMessage { break }
            }
            return connection
        } catch {
            guard lockName != nil else { return nil }
            noteLost("lost the connection to lockd", lockName: lockName)
            return nil
        }
    }

    /// Notes that the hold is gone and says so (unless `--on-lost ignore`).
    package mutating func noteLost(_ reason: String, lockName: String?) {
        guard lost == nil else { return }
        lost = reason
        guard onLost != .ignore else { return }
        let action: String
        switch onLost {
        case .signal(let signal, _, _) where !shielded: action = "the command gets \(signalName(signal))"
        case .signal, .warn: action = "the command goes on unprotected"
        case .ignore: action = ""
        }
        printError("warning: lock \"\(lockName ?? "?")\" was taken away (\(reason)); \(action)")
    }
}

/// Empties a signalfd whose only news is that something arrived.
private func drainSignalfd(_ fd: Int32) {
    var sender: Int32 = 0
    var code: Int32 = 0
    while lockd_signalfd_read(fd, &sender, &code) > 0 {}
}

/// `SIGTSTP` and the like, for messages.
package func signalName(_ signal: Int32) -> String {
    switch signal {
    case SIGINT: "SIGINT"
    case SIGTERM: "SIGTERM"
    case SIGHUP: "SIGHUP"
    case SIGQUIT: "SIGQUIT"
    case SIGKILL: "SIGKILL"
    case SIGSTOP: "SIGSTOP"
    case SIGTSTP: "SIGTSTP"
    case SIGTTIN: "SIGTTIN"
    case SIGTTOU: "SIGTTOU"
    default: "signal \(signal)"
    }
}
