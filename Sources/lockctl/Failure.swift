import ArgumentParser
import Glibc
import LockClient
import LockCore
import LockProtocol

/// lockctl's exit codes (sysexits.h where one fits).
enum Exit {
    static let conflict: Int32 = 1
    static let notHeld: Int32 = 2
    /// `run`: the hold was taken away before the command ended (`--lost-exit-code`).
    static let lost: Int32 = 3
    static let usage: Int32 = 64
    static let invalid: Int32 = 65
    static let unreachable: Int32 = 69
    static let software: Int32 = 70
    /// EX_TEMPFAIL: the daemon is stopping, or a limit of it was reached; try again later.
    static let temporary: Int32 = 75
    static let denied: Int32 = 77
}

/// Whether failures are also printed as JSON on stdout (`--json`). lockctl is one thread and sets
/// this once, before its first request.
nonisolated(unsafe) var failuresAsJSON = false

/// How long lockctl waits for an answer that is not a lock wait (`--daemon-timeout`): a stopped
/// (SIGSTOP) or wedged lockd must not hang a script (docs/lockctl.md). Set once, before the first
/// request.
nonisolated(unsafe) var answerTimeout = 10.0

/// Prints one line on stderr, `lockctl: ...`.
func printError(_ message: String) {
    let bytes = Array("lockctl: \(message)\n".utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}

/// Prints to stdout without block buffering, since scripts read it right away.
func printLine(_ text: String) {
    let bytes = Array((text + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
}

/// Reports a failure: one line on stderr, and with `--json` the protocol's error object on stdout.
func report(_ context: String, code: String, _ message: String) {
    printError("\(context) failed: \(message)")
    if failuresAsJSON {
        let error = JSONValue.object([("code", .string(code)), ("message", .string(message))])
        printLine(JSONValue.object([("ok", false), ("error", error)]).serialized)
    }
}

/// Maps a failure before or around an answer to its message and exit code.
func fail(_ context: String, _ error: ClientError) -> ExitCode {
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
func failure(of answer: Answer, _ context: String, conflictExitCode: Int32 = Exit.conflict) -> ExitCode? {
    guard let error = answer.error else { return nil }
    report(context, code: error.code.description, error.message)
    return ExitCode(exitStatus(for: error.code, conflictExitCode: conflictExitCode))
}

/// Refuses a bad value of an option: exit 65 (EX_DATAERR), as the README promises.
func invalidValue(_ message: String) -> ExitCode {
    printError(message)
    return ExitCode(Exit.invalid)
}

/// Reads a number of seconds given on the command line: a decimal number >= `minimum`, or `inf`.
/// - Returns: `nil` for `inf` (no bound).
func seconds(_ text: String, option: String, minimum: Double = 0) throws(ExitCode) -> Double? {
    guard let value = secondsValue(text, minimum: minimum) else {
        throw invalidValue(
            "\(option) must be a number of seconds >= \(minimum == 0 ? "0" : "\(minimum)"), or inf; not \"\(text)\"")
    }
    return value.isInfinite ? nil : value
}

/// A number of seconds >= `minimum`, `.infinity` for `inf`, or `nil` when `text` is neither.
func secondsValue(_ text: String, minimum: Double = 0) -> Double? {
    let lowered = text.lowercased()
    if lowered == "inf" || lowered == "infinity" { return .infinity }
    guard let value = Double(text), value.isFinite, value >= minimum else { return nil }
    return value
}

/// The exit status for an error code of lockd's.
func exitStatus(for code: LockError.Code, conflictExitCode: Int32 = Exit.conflict) -> Int32 {
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
func lockName(_ raw: String, _ context: String) throws(ExitCode) -> LockName {
    guard let name = LockName(raw) else {
        report(context, code: "invalid", "invalid lock name: use 1-255 bytes of A-Z a-z 0-9 . _ : / @ + -")
        throw ExitCode(Exit.invalid)
    }
    return name
}

/// A subcommand that talks to lockd. `--socket` may stand before the subcommand (lockctl's own
/// option, read through `@ParentCommand`) or after it (the subcommand's); the latter wins.
protocol DaemonCommand: ParsableCommand {
    var global: GlobalOptions { get }
    var lockctl: LockCtl { get }
}

/// A command line read and validated, by argument-parser or by ``QuickParse``: a plain value, so
/// that running it touches no argument-parser type.
protocol Invocation: Equatable {
    func run() throws
}

/// Where lockd is and how long to wait for its answers.
struct DaemonAddress: Equatable {
    var socket: String?
    var daemonTimeout: String?

    init(socket: String? = nil, daemonTimeout: String? = nil) {
        self.socket = socket
        self.daemonTimeout = daemonTimeout
    }

    /// The command's options, else lockctl's own (given before the subcommand's name).
    init(_ command: some DaemonCommand) {
        socket = command.global.socket ?? command.lockctl.global.socket
        daemonTimeout = command.global.daemonTimeout ?? command.lockctl.global.daemonTimeout
    }

    func connect(_ context: String) throws(ExitCode) -> LockConnection {
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
struct OwnerChoice: Equatable {
    var pid: Int32?
    var ancestor: OwnerOptions.Ancestor?
    var token: String?

    /// The owner for the protocol.
    /// - Parameter acquiring: warn when the owner is no shell (its hold ends when it exits).
    func spec(ttl: Double? = nil, _ context: String, acquiring: Bool = false) throws(ExitCode) -> OwnerSpec {
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

extension OwnerOptions {
    var choice: OwnerChoice { OwnerChoice(pid: pid, ancestor: owner, token: token) }

    func spec(ttl: Double? = nil, _ context: String, acquiring: Bool = false) throws(ExitCode) -> OwnerSpec {
        try choice.spec(ttl: ttl, context, acquiring: acquiring)
    }
}

extension DaemonCommand {
    func connect(_ context: String) throws(ExitCode) -> LockConnection {
        try DaemonAddress(self).connect(context)
    }
}

/// lockctl's ancestors as owners of holds.
enum Owners {
    static let shells: Set<String> = [
        "bash", "sh", "dash", "zsh", "ksh", "ksh93", "mksh", "fish", "ash", "yash", "tcsh", "csh", "posh", "busybox",
    ]

    /// The pid of the ancestor `which` names.
    static func resolve(_ which: OwnerOptions.Ancestor, _ context: String) throws(ExitCode) -> Int32 {
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
    static func isShell(_ pid: Int32) -> Bool {
        name(of: pid).map { shells.contains($0) || $0.hasPrefix("-") && shells.contains(String($0.dropFirst())) }
            ?? false
    }

    /// The command name of `pid` (/proc/PID/comm).
    static func name(of pid: Int32) -> String? {
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
func call(_ connection: LockConnection, _ context: String, _ operation: Operation) throws(ExitCode) -> Answer {
    let answer: Answer
    do {
        answer = try connection.call(operation, timeout: answerTimeout)
    } catch {
        throw fail(context, error)
    }
    if let code = failure(of: answer, context) { throw code }
    return answer
}
