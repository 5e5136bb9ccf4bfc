import Glibc
import LockClient
import LockCore
import LockProtocol

/// How lockctl ends: thrown by the code that knows, turned into `exit` by `main`. (argument-parser's
/// own `ExitCode` is not used here: the lean lockctl does not link argument-parser.)
package struct ExitCode: Error, Equatable {
    package var rawValue: Int32

    package init(_ rawValue: Int32) { self.rawValue = rawValue }
}

/// Which ancestor owns a hold when no `--pid` or `--token` is given (`--owner`).
package enum Ancestor: String, CaseIterable, Sendable {
    /// lockctl's parent (the default): the calling shell, unless a wrapper such as `timeout` ran
    /// lockctl.
    case parent
    /// The nearest ancestor that is a shell, past wrappers (`timeout`, `env`, `nice`, ...).
    case shell
    /// The leader of lockctl's session (a login shell, a terminal's first shell, a service).
    case sessionLeader = "session-leader"
}

/// lockctl's exit codes (sysexits.h where one fits).
package enum Exit {
    package static let conflict: Int32 = 1
    package static let notHeld: Int32 = 2
    /// `run`: the hold was taken away before the command ended (`--lost-exit-code`).
    package static let lost: Int32 = 3
    package static let usage: Int32 = 64
    package static let invalid: Int32 = 65
    package static let unreachable: Int32 = 69
    package static let software: Int32 = 70
    /// EX_TEMPFAIL: the daemon is stopping, or a limit of it was reached; try again later.
    package static let temporary: Int32 = 75
    package static let denied: Int32 = 77
}

/// Whether failures are also printed as JSON on stdout (`--json`). lockctl is one thread and sets
/// this once, before its first request.
package nonisolated(unsafe) var failuresAsJSON = false

/// How long lockctl waits for an answer that is not a lock wait (`--daemon-timeout`): a stopped
/// (SIGSTOP) or wedged lockd must not hang a script (docs/lockctl.md). Set once, before the first
/// request.
package nonisolated(unsafe) var answerTimeout = 10.0

/// Prints one line on stderr, `lockctl: ...`.
package func printError(_ message: String) {
    let bytes = Array("lockctl: \(message)\n".utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}

/// Prints to stdout without block buffering, since scripts read it right away.
package func printLine(_ text: String) {
    let bytes = Array((text + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
}

/// Reports a failure: one line on stderr, and with `--json` the protocol's error object on stdout.
package func report(_ context: String, code: String, _ message: String) {
    printError("\(context) failed: \(message)")
    if failuresAsJSON {
        let error = JSONValue.object([("code", .string(code)), ("message", .string(message))])
        printLine(JSONValue.object([("ok", false), ("error", error)]).serialized)
    }
}

/// Maps a failure before or around an answer to its message and exit code.
package func fail(_ context: String, _ error: ClientError) -> ExitCode {
    switch error.kind {
    case .unreachable:
        report(context, code: "unreachable", error.message)
        return ExitCode(Exit.unreachable)
    case .permissionDenied:
        report(context, code: "denied", error.message)
        return ExitCode(Exit.denied)
    case .refused:
        let code = error.code ?? .limit
        report(context, code: code.description, error.message)
        return ExitCode(exitStatus(for: code))
    case .connectionLost:
        report(context, code: "unreachable", "lockd went away: \(error.message)")
        return ExitCode(Exit.unreachable)
    case .timedOut:
        report(context, code: "unreachable", "\(error.message) (is lockd stopped?)")
        return ExitCode(Exit.unreachable)
    case .badResponse:
        report(context, code: "bad_response", error.message)
        return ExitCode(Exit.software)
    }
}

/// Checks a daemon answer; on failure prints the cause and returns the exit code to use.
package func failure(of answer: Answer, _ context: String, conflictExitCode: Int32 = Exit.conflict) -> ExitCode? {
    guard let error = answer.error else { return nil }
    report(context, code: error.code.description, error.message)
    return ExitCode(exitStatus(for: error.code, conflictExitCode: conflictExitCode))
}

/// Refuses a bad value of an option: exit 65 (EX_DATAERR), as the README promises.
package func invalidValue(_ message: String) -> ExitCode {
    printError(message)
    return ExitCode(Exit.invalid)
}

/// Reads a number of seconds given on the command line: a decimal number >= `minimum`, or `inf`.
/// - Returns: `nil` for `inf` (no bound).
package func seconds(_ text: String, option: String, minimum: Double = 0) throws(ExitCode) -> Double? {
    guard let value = secondsValue(text, minimum: minimum) else {
        throw invalidValue(
            "\(option) must be a number of seconds >= \(minimum == 0 ? "0" : "\(minimum)"), or inf; not \"\(text)\"")
    }
    return value.isInfinite ? nil : value
}

/// A number of seconds >= `minimum`, `.infinity` for `inf`, or `nil` when `text` is neither.
package func secondsValue(_ text: String, minimum: Double = 0) -> Double? {
    let lowered = text.lowercased()
    if lowered == "inf" || lowered == "infinity" { return .infinity }
    guard let value = Double(text), value.isFinite, value >= minimum else { return nil }
    return value
}

/// The exit status for an error code of lockd's.
package func exitStatus(for code: LockError.Code, conflictExitCode: Int32 = Exit.conflict) -> Int32 {
    switch code {
    case .busy, .timeout, .deadlock: conflictExitCode
    case .notHeld: Exit.notHeld
    case .invalid, .tooLarge: Exit.invalid
    case .shuttingDown, .limit: Exit.temporary
    case .denied: Exit.denied
    default: Exit.software
    }
}

/// A lock name from the command line, or exit 65 with the protocol's reason.
package func lockName(_ raw: String, _ context: String) throws(ExitCode) -> LockName {
    guard let name = LockName(raw) else {
        report(context, code: "invalid", "invalid lock name: use 1-255 bytes of A-Z a-z 0-9 . _ : / @ + -")
        throw ExitCode(Exit.invalid)
    }
    return name
}

/// A command line read and validated, by argument-parser or by ``QuickParse``: a plain value, so
/// that running it touches no argument-parser type.
package protocol Invocation: Equatable {
    func run() throws
}

/// Where lockd is and how long to wait for its answers.
package struct DaemonAddress: Equatable {
    package var socket: String?
    package var daemonTimeout: String?

    package init(socket: String? = nil, daemonTimeout: String? = nil) {
        self.socket = socket
        self.daemonTimeout = daemonTimeout
    }

    package func connect(_ context: String) throws(ExitCode) -> LockConnection {
        if let daemonTimeout {
            answerTimeout = try seconds(daemonTimeout, option: "--daemon-timeout") ?? Seconds.ceiling
        }
        do {
            return try LockConnection.connect(toFirstOf: SocketPath.candidates(socket))
        } catch {
            throw fail(context, error)
        }
    }
}

/// Whose hold a command is about: a token, a pid, an ancestor, or by default lockctl's parent.
package struct OwnerChoice: Equatable {
    package var pid: Int32?
    package var ancestor: Ancestor?
    package var token: String?

    package init(pid: Int32? = nil, ancestor: Ancestor? = nil, token: String? = nil) {
        self.pid = pid
        self.ancestor = ancestor
        self.token = token
    }

    /// The owner for the protocol.
    /// - Parameter acquiring: warn when the owner is no shell (its hold ends when it exits).
    package func spec(ttl: Double? = nil, _ context: String, acquiring: Bool = false) throws(ExitCode) -> OwnerSpec {
        if let token {
            guard Request.isValidToken(token) else {
                report(context, code: "invalid", "a token is 1-255 bytes with no control characters")
                throw ExitCode(Exit.invalid)
            }
            return .token(token, ttl: ttl)
        }
        if let pid { return .pid(pid) }
        let owner = try Owners.resolve(ancestor ?? .parent, context)
        if acquiring, !Owners.isShell(owner) {
            // `timeout 5 lockctl acquire x` would make `timeout` the owner, and the hold would end
            // the moment it exits: say so while the caller can still choose.
            printError(
                "warning: the hold's owner is pid \(owner) (\(Owners.name(of: owner) ?? "?")), not a shell: the hold "
                    + "ends when it exits; --owner shell names the nearest shell, --pid $$ a script's own shell")
        }
        return .pid(owner)
    }
}

/// lockctl's ancestors as owners of holds.
package enum Owners {
    package static let shells: Set<String> = [
        "bash", "sh", "dash", "zsh", "ksh", "ksh93", "mksh", "fish", "ash", "yash", "tcsh", "csh", "posh", "busybox",
    ]

    /// The pid of the ancestor `which` names.
    package static func resolve(_ which: Ancestor, _ context: String) throws(ExitCode) -> Int32 {
        switch which {
        case .parent:
            return getppid()
        case .sessionLeader:
            let leader = getsid(0)
            guard leader > 1 else { throw invalidValue("\(context) failed: lockctl's session has no leader process") }
            return leader
        case .shell:
            guard let shell = WaitReport.ancestors().first(where: isShell) else {
                throw invalidValue("\(context) failed: no shell among lockctl's ancestors; use --pid")
            }
            return shell
        }
    }

    /// Whether `pid` runs a shell (by its command name).
    package static func isShell(_ pid: Int32) -> Bool {
        name(of: pid).map { shells.contains($0) || $0.hasPrefix("-") && shells.contains(String($0.dropFirst())) }
            ?? false
    }

    /// The command name of `pid` (/proc/PID/comm).
    package static func name(of pid: Int32) -> String? {
        let fd = open("/proc/\(pid)/comm", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { return nil }
        var name = buffer[..<count]
        while name.last == UInt8(ascii: "\n") { name = name.dropLast() }
        return String(decoding: name, as: UTF8.self)
    }
}

/// Runs a request and returns its successful answer, or throws the exit code after printing why.
package func call(_ connection: LockConnection, _ context: String, _ operation: Operation) throws(ExitCode) -> Answer {
    let answer: Answer
    do {
        answer = try connection.call(operation, timeout: answerTimeout)
    } catch {
        throw fail(context, error)
    }
    if let code = failure(of: answer, context) { throw code }
    return answer
}
