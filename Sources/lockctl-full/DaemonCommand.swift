import ArgumentParser
import Glibc
import LockClient
import LockCore
import LockProtocol
import LockctlCore

/// A subcommand that talks to lockd. `--socket` may stand before the subcommand (lockctl's own
/// option, read through `@ParentCommand`) or after it (the subcommand's); the latter wins.
protocol DaemonCommand: ParsableCommand {
    var global: GlobalOptions { get }
    var lockctl: LockCtl { get }
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

extension DaemonAddress {
    /// The command's options, else lockctl's own (given before the subcommand's name).
    init(_ command: some DaemonCommand) {
        self.init(
            socket: command.global.socket ?? command.lockctl.global.socket,
            daemonTimeout: command.global.daemonTimeout ?? command.lockctl.global.daemonTimeout)
    }
}

extension Ancestor: ExpressibleByArgument {}

extension LostPolicy: ExpressibleByArgument {}
