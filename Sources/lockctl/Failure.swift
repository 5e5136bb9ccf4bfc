import ArgumentParser
import Glibc
import LockClient
import LockCore
import LockProtocol

/// lockctl's exit codes (sysexits.h where one fits).
enum Exit {
    static let conflict: Int32 = 1
    static let notHeld: Int32 = 2
    static let usage: Int32 = 64
    static let invalid: Int32 = 65
    static let unreachable: Int32 = 69
    static let software: Int32 = 70
    /// EX_TEMPFAIL: the daemon is stopping, or a limit of it was reached; try again later.
    static let temporary: Int32 = 75
    static let denied: Int32 = 77
}

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

/// Maps a failure to its message and exit code.
func fail(_ context: String, _ error: ClientError) -> ExitCode {
    printError("\(context) failed: \(error.message)")
    switch error.kind {
    case .unreachable: return ExitCode(Exit.unreachable)
    case .permissionDenied: return ExitCode(Exit.denied)
    case .connectionLost, .badResponse, .timedOut: return ExitCode(Exit.software)
    }
}

/// Checks a daemon answer; on failure prints the cause and returns the exit code to use.
func failure(of answer: Answer, _ context: String, conflictExitCode: Int32 = Exit.conflict) -> ExitCode? {
    guard let error = answer.error else { return nil }
    printError("\(context) failed: \(error.message)")
    return ExitCode(exitStatus(for: error.code, conflictExitCode: conflictExitCode))
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
        printError("\(context) failed: invalid lock name: use 1-255 bytes of A-Z a-z 0-9 . _ : / @ + -")
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

extension DaemonCommand {
    func connect(_ context: String) throws(ExitCode) -> LockConnection {
        do {
            return try LockConnection(path: SocketPath.resolve(global.socket ?? lockctl.global.socket))
        } catch {
            throw fail(context, error)
        }
    }
}

extension OwnerOptions {
    /// The owner: a token, a pid, or the parent process (the calling shell).
    func spec(ttl: Double? = nil, _ context: String) throws(ExitCode) -> OwnerSpec {
        if let token {
            guard Request.isValidToken(token) else {
                printError("\(context) failed: a token is 1-255 bytes with no control characters")
                throw ExitCode(Exit.invalid)
            }
            return .token(token, ttl: ttl)
        }
        return .pid(pid ?? getppid())
    }
}

/// Runs a request and returns its successful answer, or throws the exit code after printing why.
func call(_ connection: LockConnection, _ context: String, _ operation: Operation) throws(ExitCode) -> Answer {
    let answer: Answer
    do {
        answer = try connection.call(operation)
    } catch {
        throw fail(context, error)
    }
    if let code = failure(of: answer, context) { throw code }
    return answer
}
