import ArgumentParser
import CLockSupport
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
    @Flag(
        name: [.customShort("o"), .long],
        help: "Do not pass the connection to the command: the hold ends with lockctl, and the command dies with it.")
    var close = false
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
        // The command inherits the connection (unless --close): like flock's descriptor, the
        // hold then lasts while any process of the command lives, even if lockctl is killed.
        // As a subreaper, lockctl adopts what the command leaves running, and so can tell.
        if !close { lockd_become_subreaper() }
        let child = ChildProcess(
            arguments: command, shielded: shield, inherited: close ? nil : connection, diesWithLockctl: close)
        let end = try child.run(signals: signals, connection: connection, lockName: name)
        // When nothing of the command is left, release now, so that the lock is free before
        // lockctl ends and not merely once lockd notices the closed connection. Processes left
        // behind keep the hold until the last of them closes the connection (flock's rule).
        if close || lockd_has_children() == 0 {
            _ = try? connection.call(.release(lock: lock, owner: .session, all: true), timeout: 5)
        }
        end.finish()
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
            try ChildProcess(arguments: command, shielded: true).run(signals: signals, connection: nil, lockName: nil)
                .finish()
        }
        failuresAsJSON = json
        let context = "shield \"\(name)\""
        if on, owner.token != nil {
            // A token's shield lasts as long as the connection that opened it (a dead client must
            // not defer a lease forever), and lockctl's ends when it exits: it would be gone at once.
            printError(
                "\(context) failed: a shield on a token hold lasts only while the connection that opened it is "
                    + "open, and lockctl's closes when it exits; use `lockctl run \(name) --shield -- CMD`, or open "
                    + "the shield from a program that keeps its connection")
            throw ExitCode(Exit.usage)
        }
        let lock = try lockName(name, context)
        let owner = try owner.spec(context)
        let connection = try connect(context)
        let answer = try call(connection, context, .shield(lock: lock, owner: owner, on: on))
        if json { printLine(JSONValue.object([("depth", answer.depth.map(JSONValue.int) ?? .null)]).serialized) }
    }
}
