import ArgumentParser
import LockClient
import LockProtocol

/// The lock-waiting options shared by `acquire` and `run`.
struct WaitOptions: ParsableArguments {
    @Flag(help: "Ask for a shared hold (default: exclusive).") var shared = false
    @Option(help: "Seconds to wait for the lock (default: forever).") var wait: Double?
    @Flag(help: "Do not wait: fail at once if the lock is held.") var noWait = false
    @Option(help: "Exit code when the lock cannot be had (busy, timeout, deadlock).")
    var conflictExitCode: Int32 = Exit.conflict

    func validate() throws {
        if noWait, wait != nil { throw ValidationError("use either --wait or --no-wait, not both") }
        if let wait, !(wait >= 0 && wait.isFinite) { throw ValidationError("--wait must be seconds >= 0") }
    }

    var fields: [(key: String, value: JSONValue)] {
        var fields: [(key: String, value: JSONValue)] = [("mode", .string(shared ? "shared" : "exclusive"))]
        if noWait { fields.append(("wait", 0)) } else if let wait { fields.append(("wait", .double(wait))) }
        return fields
    }
}

/// Acquires a lock while watching for SIGINT/SIGTERM/SIGHUP; a signal cancels the wait and, if
/// the grant raced with the cancel, releases it again so no hold is left behind.
/// - Returns: the grant, or throws the exit code (128+signal when interrupted).
func acquireInterruptibly(
    _ connection: LockConnection, name: String, owner: JSONValue, wait: WaitOptions, signals: TerminationSignals
) throws(ExitCode) -> JSONValue {
    let context = "acquire \"\(name)\""
    do {
        let id = try connection.send(op: "acquire", [("lock", .string(name)), ("owner", owner)] + wait.fields)
        while true {
            if !connection.hasBufferedMessage {
                let ready = waitReadable([connection.fd, signals.fd])
                if ready[1], let first = signals.drain().first {
                    try cancel(connection, request: id, name: name, owner: owner)
                    throw ExitCode(128 + first.signal)
                }
                if !ready[0] { continue }
            }
            guard let message = try connection.readMessage(timeout: 0) else { continue }
            guard message["id"].flatMap(RequestID.init) == id else { continue }
            if let code = failure(of: message, context, conflictExitCode: wait.conflictExitCode) { throw code }
            return message
        }
    } catch let error as ClientError {
        throw fail(context, error)
    } catch let code as ExitCode {
        throw code
    } catch {
        throw ExitCode(Exit.software)
    }
}

private func cancel(_ connection: LockConnection, request: RequestID, name: String, owner: JSONValue) throws {
    try connection.send(op: "cancel", [("request", request.json)])
    let answer = try connection.response(to: request, timeout: 5)
    if answer["ok"]?.bool == true {
        _ = try connection.call(op: "release", [("lock", .string(name)), ("owner", owner)], timeout: 5)
    }
}

struct Acquire: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "acquire",
        abstract: "Acquire a lock for the calling shell (re-entrant; released when the shell exits).")

    @Argument(help: "Lock name.") var name: String
    @OptionGroup var waitOptions: WaitOptions
    @OptionGroup var owner: OwnerOptions
    @Option(help: "Lease in seconds for a --token owner.") var ttl: Double?
    @Flag(help: "Print the grant (lock, mode, count, fence) as JSON.") var json = false
    @OptionGroup var global: GlobalOptions

    func validate() throws {
        if owner.token != nil, ttl == nil { throw ValidationError("--token needs --ttl SECONDS") }
        if owner.token == nil, ttl != nil { throw ValidationError("--ttl goes with --token") }
    }

    func run() throws {
        let signals = TerminationSignals()
        let connection = try global.connect("acquire \"\(name)\"")
        let grant = try acquireInterruptibly(
            connection, name: name, owner: owner.spec(ttl: ttl), wait: waitOptions, signals: signals)
        if json {
            let fields = ["lock", "mode", "count", "fence"].map { ($0, grant[$0] ?? .null) }
            printLine(JSONValue.object(fields).serialized)
        }
    }
}
