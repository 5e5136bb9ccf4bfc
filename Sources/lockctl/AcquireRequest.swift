import ArgumentParser
import LockClient
import LockCore
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

    var mode: LockMode { shared ? .shared : .exclusive }

    /// The protocol's `wait`: 0 tries once, `nil` waits forever.
    var seconds: Double? { noWait ? 0 : wait }
}

/// Acquires a lock while watching for SIGINT/SIGTERM/SIGHUP; a signal cancels the wait and, if
/// the grant raced with the cancel, releases it again so no hold is left behind.
/// - Returns: the grant, or throws the exit code (128+signal when interrupted).
func acquireInterruptibly(
    _ connection: LockConnection, name: LockName, owner: OwnerSpec, wait: WaitOptions, signals: TerminationSignals
) throws(ExitCode) -> Grant {
    let context = "acquire \"\(name)\""
    do {
        let id = try connection.send(.acquire(lock: name, mode: wait.mode, wait: wait.seconds, owner: owner))
        while true {
            if !connection.hasBufferedMessage {
                let ready = waitReadable([connection.fd, signals.fd])
                if ready[1], let first = signals.drain().first {
                    try cancel(connection, request: id, name: name, owner: owner)
                    throw ExitCode(128 + first.signal)
                }
                if !ready[0] { continue }
            }
            guard case .answer(let answer)? = try connection.readMessage(timeout: 0), answer.id == id else { continue }
            if let code = failure(of: answer, context, conflictExitCode: wait.conflictExitCode) { throw code }
            guard let grant = answer.grant else {
                printError("\(context) failed: lockd answered without a grant")
                throw ExitCode(Exit.software)
            }
            return grant
        }
    } catch let error as ClientError {
        throw fail(context, error)
    } catch let code as ExitCode {
        throw code
    } catch {
        throw ExitCode(Exit.software)
    }
}

private func cancel(_ connection: LockConnection, request: RequestID, name: LockName, owner: OwnerSpec) throws {
    try connection.send(.cancel(request: request))
    if try connection.answer(to: request, timeout: 5).isOK {
        _ = try connection.call(.release(lock: name, owner: owner, all: false), timeout: 5)
    }
}

struct Acquire: DaemonCommand {
    static let configuration = CommandConfiguration(
        commandName: "acquire",
        abstract: "Acquire a lock for the calling shell (re-entrant; released when the shell exits).")

    @Argument(help: "Lock name.") var name: String
    @OptionGroup var waitOptions: WaitOptions
    @OptionGroup var owner: OwnerOptions
    @Option(help: "Lease in seconds for a --token owner.") var ttl: Double?
    @Flag(help: "Print the grant (lock, mode, count, fence) as JSON.") var json = false
    @OptionGroup var global: GlobalOptions
    @ParentCommand var lockctl: LockCtl

    func validate() throws {
        if owner.token != nil, ttl == nil { throw ValidationError("--token needs --ttl SECONDS") }
        if owner.token == nil, ttl != nil { throw ValidationError("--ttl goes with --token") }
    }

    func run() throws {
        let signals = TerminationSignals()
        let context = "acquire \"\(name)\""
        let lock = try lockName(name, context)
        let owner = try owner.spec(ttl: ttl, context)
        let connection = try connect(context)
        let grant = try acquireInterruptibly(connection, name: lock, owner: owner, wait: waitOptions, signals: signals)
        if json { printLine(JSONValue.object(Response.grant(grant)).serialized) }
    }
}
