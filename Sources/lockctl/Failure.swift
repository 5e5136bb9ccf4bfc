import ArgumentParser
import Glibc
import LockClient
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

/// Checks a daemon answer; on `ok: false` prints the cause and returns the exit code to use.
func failure(of answer: JSONValue, _ context: String, conflictExitCode: Int32 = Exit.conflict) -> ExitCode? {
    guard answer["ok"]?.bool != true else { return nil }
    let code = answer["error"]?["code"]?.string ?? "unknown"
    let message = answer["error"]?["message"]?.string ?? "no message"
    printError("\(context) failed: \(message)")
    switch code {
    case "busy", "timeout", "deadlock": return ExitCode(conflictExitCode)
    case "not_held": return ExitCode(Exit.notHeld)
    case "invalid", "too_large": return ExitCode(Exit.invalid)
    case "shutting_down", "limit": return ExitCode(Exit.temporary)
    case "denied": return ExitCode(Exit.denied)
    default: return ExitCode(Exit.software)
    }
}

extension GlobalOptions {
    func connect(_ context: String) throws(ExitCode) -> LockConnection {
        do {
            return try LockConnection(path: SocketPath.resolve(socket))
        } catch {
            throw fail(context, error)
        }
    }
}

extension OwnerOptions {
    /// The owner as the protocol writes it: a token, a pid, or the parent process.
    func spec(ttl: Double? = nil) -> JSONValue {
        if let token { return OwnerSpec.token(token, ttl: ttl).json }
        return OwnerSpec.pid(pid ?? getppid()).json
    }
}

/// Runs a request and returns its successful answer, or throws the exit code after printing why.
func call(
    _ connection: LockConnection, _ context: String, op: String, _ fields: [(key: String, value: JSONValue)]
) throws(ExitCode) -> JSONValue {
    let answer: JSONValue
    do {
        answer = try connection.call(op: op, fields)
    } catch {
        throw fail(context, error)
    }
    if let code = failure(of: answer, context) { throw code }
    return answer
}
