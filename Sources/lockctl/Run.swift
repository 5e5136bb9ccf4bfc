import ArgumentParser
import Glibc
import LockClient
import LockProtocol

struct Run: DaemonCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Hold a lock while a command runs; exit with the command's status.")

    @Argument(help: "Lock name.") var name: String
    @OptionGroup var waitOptions: WaitOptions
    @Flag(help: "Shield the command: hold back SIGINT/SIGTERM/SIGHUP, break and daemon stop until it ends.")
    var shield = false
    @OptionGroup var global: GlobalOptions
    @ParentCommand var lockctl: LockCtl
    @Argument(parsing: .postTerminator, help: "The command and its arguments, after --.")
    var command: [String] = []

    func validate() throws {
        if command.isEmpty { throw ValidationError("give the command after --, e.g. lockctl run db -- ./migrate") }
    }

    func run() throws {
        let signals = TerminationSignals()
        let context = "run \"\(name)\""
        let lock = try lockName(name, context)
        let connection = try connect(context)
        // The hold belongs to this connection: if lockctl dies, the hold goes, and CMD with it.
        _ = try acquireInterruptibly(connection, name: lock, owner: .session, wait: waitOptions, signals: signals)
        if shield {
            _ = try call(connection, context, .shield(lock: lock, owner: .session, on: true))
        }
        let status = try ChildProcess(arguments: command, shielded: shield)
            .run(signals: signals, connection: connection, lockName: name)
        // Release explicitly (a shielded hold may be released by its owner) so that the lock is
        // free before lockctl exits, not merely once lockd notices the closed connection.
        _ = try? connection.call(.release(lock: lock, owner: .session, all: true), timeout: 5)
        exitWithCommandStatus(status)
    }
}

struct Shield: DaemonCommand {
    static let configuration = CommandConfiguration(
        commandName: "shield",
        abstract: "Run a command with SIGINT/SIGTERM/SIGHUP held back until it ends (no daemon needed), "
            + "or open/close a shield on a hold (`lockctl shield NAME --on`).")

    @Argument(help: "Lock name, to shield a hold instead of running a command.") var name: String?
    @Flag(help: "Open a shield on the hold.") var on = false
    @Flag(help: "Close a shield on the hold.") var off = false
    @OptionGroup var owner: OwnerOptions
    @Flag(help: "Print the daemon's answer as JSON.") var json = false
    @OptionGroup var global: GlobalOptions
    @ParentCommand var lockctl: LockCtl
    @Argument(parsing: .postTerminator, help: "The command and its arguments, after --.")
    var command: [String] = []

    func validate() throws {
        if command.isEmpty {
            guard name != nil, on != off else {
                throw ValidationError("use `shield -- CMD [ARGS...]` or `shield NAME --on|--off`")
            }
        } else if name != nil || on || off {
            throw ValidationError("`shield -- CMD` takes no lock name; use `run NAME --shield -- CMD`")
        }
    }

    func run() throws {
        guard let name else {
            let signals = TerminationSignals()
            exitWithCommandStatus(
                try ChildProcess(arguments: command, shielded: true).run(
                    signals: signals, connection: nil, lockName: nil))
        }
        let context = "shield \"\(name)\""
        let lock = try lockName(name, context)
        let owner = try owner.spec(context)
        let connection = try connect(context)
        let answer = try call(connection, context, .shield(lock: lock, owner: owner, on: on))
        if json { printLine(JSONValue.object([("depth", answer.depth.map(JSONValue.int) ?? .null)]).serialized) }
    }
}

/// Ends lockctl with the command's status. Throwing `ExitCode` would do the same through
/// argument-parser's error path, which builds a message by reflection: 2.7% of a `run`
/// (docs/performance.md).
private func exitWithCommandStatus(_ status: Int32) -> Never {
    exit(status)
}
