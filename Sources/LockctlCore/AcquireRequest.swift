import LockClient
import LockCore
import LockProtocol

/// How to wait for a lock: the mode asked for, the protocol's `wait` (0 tries once, `nil` waits
/// forever), and the exit code when the lock cannot be had.
package struct WaitSpec: Equatable {
    package var mode = LockMode.exclusive
    package var seconds: Double?
    package var conflictExitCode = Exit.conflict

    package init(mode: LockMode = .exclusive, seconds: Double? = nil, conflictExitCode: Int32 = Exit.conflict) {
        self.mode = mode
        self.seconds = seconds
        self.conflictExitCode = conflictExitCode
    }
}

/// Acquires a lock while watching for SIGINT/SIGTERM/SIGHUP; a signal cancels the wait and, if
/// the grant raced with the cancel, releases it again so no hold is left behind.
/// - Returns: the grant, or throws the exit code (128+signal when interrupted).
package func acquireInterruptibly(
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

/// `lockctl acquire`, read by either reader (QuickParse or argument-parser) and validated.
package struct AcquireInvocation: Invocation {
    package var name: String
    package var wait = WaitSpec()
    package var owner = OwnerChoice()
    /// The lease of a token owner, in seconds.
    package var ttl: Double?
    package var json = false
    package var daemon = DaemonAddress()

    package init(
        name: String, wait: WaitSpec = WaitSpec(), owner: OwnerChoice = OwnerChoice(), ttl: Double? = nil,
        json: Bool = false, daemon: DaemonAddress = DaemonAddress()
    ) {
        self.name = name
        self.wait = wait
        self.owner = owner
        self.ttl = ttl
        self.json = json
        self.daemon = daemon
    }

    package func run() throws {
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
