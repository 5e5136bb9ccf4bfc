import CLockSupport
import Glibc
import LockClient
import LockCore
import LockProtocol

/// `lockctl run`, read by either reader and validated.
package struct RunInvocation: Invocation {
    package var name: String
    package var wait = WaitSpec()
    package var shield = false
    package var onLost = LostPolicy.standard
    package var lostExitCode = Exit.lost
    package var close = false
    package var daemon = DaemonAddress()
    package var command: [String]

    package init(
        name: String, wait: WaitSpec = WaitSpec(), shield: Bool = false, onLost: LostPolicy = .standard,
        lostExitCode: Int32 = Exit.lost, close: Bool = false, daemon: DaemonAddress = DaemonAddress(),
        command: [String]
    ) {
        self.name = name
        self.wait = wait
        self.shield = shield
        self.onLost = onLost
        self.lostExitCode = lostExitCode
        self.close = close
        self.daemon = daemon
        self.command = command
    }

    package func run() throws {
        let signals = TerminationSignals()
        let context = "run \"\(name)\""
        let lock = try lockName(name, context)
        let connection = try daemon.connect(context)
        // The hold belongs to this connection: if lockctl dies, the hold goes, and CMD with it.
        _ = try acquireInterruptibly(connection, name: lock, owner: .session, wait: wait, signals: signals)
        if shield {
            _ = try call(connection, context, .shield(lock: lock, owner: .session, on: true))
        }
        // The command inherits the connection (unless --close): like flock's descriptor, the
        // hold then lasts while any process of the command lives, even if lockctl is killed.
        // As a subreaper, lockctl adopts what the command leaves running, and so can tell.
        if !close { lockd_become_subreaper() }
        var child = ChildProcess(
            arguments: command, shielded: shield, inherited: close ? nil : connection, diesWithLockctl: close,
            onLost: onLost)
        var end = try child.run(signals: signals, connection: connection, lockName: name)
        if shield, child.lost == nil {
            // A break deferred by the shield applies when it closes: then the section was not
            // exclusive to its end either, and the caller must hear it.
            if let answer = try? connection.call(.shield(lock: lock, owner: .session, on: false), timeout: 5),
                !answer.isOK
            {
                child.noteLost("the hold was gone when the command ended", lockName: name)
            }
            while case .revoked(let revocation)? = try? connection.takeBacklog() {
                child.noteLost("\(revocation.reason.rawValue), deferred by the shield", lockName: name)
            }
        }
        if child.lost != nil, onLost != .ignore { end = .exited(lostExitCode) }
        // When nothing of the command is left, release now, so that the lock is free before
        // lockctl ends and not merely once lockd notices the closed connection. Processes left
        // behind keep the hold until the last of them closes the connection (flock's rule).
        if close || lockd_has_children() == 0 {
            _ = try? connection.call(.release(lock: lock, owner: .session, all: true), timeout: 5)
        }
        end.finish()
    }
}
