import ArgumentParser
import LockClient
import LockCore
import LockProtocol

/// The lock-waiting options shared by `acquire` and `run`.
struct WaitOptions: ParsableArguments {
    @Flag(help: "Ask for a shared hold (default: exclusive).") var shared = false
    // Read as text: argument-parser would take `-1` for an option and answer "Missing value".
    @Option(parsing: .unconditional, help: "Seconds to wait for the lock, or inf (default: forever).")
    var wait: String?
    @Flag(help: "Do not wait: fail at once if the lock is held.") var noWait = false
    @Option(help: "Exit code (1-255) when the lock cannot be had (busy, timeout, deadlock).")
    var conflictExitCode: Int32 = Exit.conflict

    func validate() throws {
        if noWait, wait != nil { throw ValidationError("use either --wait or --no-wait, not both") }
        if let wait { _ = try seconds(wait, option: "--wait") }
        // 0 would make a failed acquire look like success to the calling script.
        guard (1...255).contains(conflictExitCode) else {
            throw invalidValue("--conflict-exit-code must be 1-255, not \(conflictExitCode)")
        }
    }

    /// The options as a plain value (read after validation).
    var spec: WaitSpec {
        WaitSpec(
            mode: shared ? .shared : .exclusive,
            seconds: noWait ? 0 : wait.flatMap { secondsValue($0) }.flatMap { $0.isInfinite ? nil : $0 },
            conflictExitCode: conflictExitCode)
    }
}

/// How to wait for a lock: the mode asked for, the protocol's `wait` (0 tries once, `nil` waits
/// forever), and the exit code when the lock cannot be had.
struct WaitSpec: Equatable {
    var mode = LockMode.exclusive
    var seconds: Double?
    var conflictExitCode = Exit.conflict
}

/// Acquires a lock while watching for SIGINT/SIGTERM/SIGHUP; a signal cancels the wait and, if
/// the grant raced with the cancel, releases it again so no hold is left behind.
/// - Returns: the grant, or throws the exit code (128+signal when interrupted).
func acquireInterruptibly(
    _ connection: LockConnection, name: LockName, owner: OwnerSpec, wait: WaitSpec, signals: TerminationSignals
) throws(ExitCode) -> Grant {
    let context = "acquire \"\(name)\""
    do {
        let id = try connection.send(.acquire(lock: name, mode: wait.mode, wait: wait.seconds, owner: owner))
        // lockd answers by the end of the wait; a lockd that does not (stopped, wedged) must not
        // keep the caller past it for long.
        let start = LockConnection.monotonicSeconds()
        let deadline = wait.seconds.map { start + Seconds.clamped($0) + answerTimeout }
        // A wait that lasts says once who it waits for (and whether that can ever end).
        var holdersAsked: RequestID?
        var saidWhy = false
        while true {
            let now = LockConnection.monotonicSeconds()
            if let deadline, now > deadline {
                throw ClientError(.timedOut, "lockd did not answer within the wait and \(Int(answerTimeout)) s more")
            }
            if holdersAsked == nil, !saidWhy, now - start >= 1 {
                holdersAsked = try connection.send(.status(lock: name))
            }
            if !connection.hasBufferedMessage {
                let ready = waitReadable([connection.fd, signals.fd], timeout: 200)
                if ready[1], let first = signals.drain().first {
                    try cancel(connection, request: id, name: name, owner: owner)
                    CommandEnd.signaled(first.signal).finish()
                }
                if !ready[0] { continue }
            }
            guard case .answer(let answer)? = try connection.readMessage(timeout: 0) else { continue }
            if let asked = holdersAsked, answer.id == asked {
                holdersAsked = nil
                saidWhy = true
                if let why = WaitReport(name: name, locks: answer.locks ?? []).message { printError(why) }
                continue
            }
            guard answer.id == id else { continue }
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

    @Argument(help: "Lock name.", completion: .lockNames) var name: String
    @OptionGroup var waitOptions: WaitOptions
    @OptionGroup var owner: OwnerOptions
    @Option(
        parsing: .unconditional,
        help: "Lease in seconds for a --token owner (default: lockd's limits.default_ttl; at least 0.001).")
    var ttl: String?
    @Flag(help: "Print the grant (lock, mode, count, fence, expires) as JSON; failures too.") var json = false
    @OptionGroup var global: GlobalOptions
    @ParentCommand var lockctl: LockCtl

    func validate() throws {
        if owner.token == nil, ttl != nil { throw ValidationError("--ttl goes with --token") }
        if let ttl { _ = try seconds(ttl, option: "--ttl", minimum: 0.001) }
    }

    func run() throws { try invocation.run() }

    var invocation: AcquireInvocation {
        AcquireInvocation(
            name: name, wait: waitOptions.spec, owner: owner.choice,
            // `inf` is lockd's ceiling (100 years); below 1 ms a lease would end before its answer.
            ttl: ttl.flatMap { secondsValue($0, minimum: 0.001) }.map { $0.isInfinite ? Seconds.ceiling : $0 },
            json: json, daemon: DaemonAddress(self))
    }
}

/// `lockctl acquire`, read by either reader (QuickParse or argument-parser) and validated.
struct AcquireInvocation: Invocation {
    var name: String
    var wait = WaitSpec()
    var owner = OwnerChoice()
    /// The lease of a token owner, in seconds.
    var ttl: Double?
    var json = false
    var daemon = DaemonAddress()

    func run() throws {
        failuresAsJSON = json
        let signals = TerminationSignals()
        let context = "acquire \"\(name)\""
        let lock = try lockName(name, context)
        let owner = try owner.spec(ttl: ttl, context, acquiring: true)
        let connection = try daemon.connect(context)
        let grant = try acquireInterruptibly(connection, name: lock, owner: owner, wait: wait, signals: signals)
        if json { printLine(JSONValue.object(Response.grant(grant)).serialized) }
    }
}
