import ArgumentParser
import Glibc
import LockClient
import LockCore
import LockProtocol
import LockctlCore

struct Run: DaemonCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Hold a lock while a command runs; exit with the command's status.")

    @Argument(help: "Lock name.", completion: .lockNames) var name: String
    @OptionGroup var waitOptions: WaitOptions
    @Flag(help: "Shield the command: hold back SIGINT/SIGTERM/SIGHUP, break and daemon stop until it ends.")
    var shield = false
    @Option(
        help: ArgumentHelp(
            "What to do when the hold is taken away while the command runs (break, lost connection).",
            discussion: "signal:SIG[,grace:SECONDS[,then:SIG|none]] (default signal:TERM,grace:5,then:KILL), "
                + "warn or ignore. Unless ignore, lockctl then exits with --lost-exit-code."))
    var onLost = LostPolicy.standard
    @Option(help: "Exit code (1-255) when the hold was taken away before the command ended (default 3).")
    var lostExitCode: Int32 = Exit.lost
    @Flag(
        name: [.customShort("o"), .long],
        help: "Do not pass the connection to the command: the hold ends with lockctl, and the command dies with it.")
    var close = false
    @OptionGroup var global: GlobalOptions
    @ParentCommand var lockctl: LockCtl
    @Argument(parsing: .postTerminator, help: "The command and its arguments, after --.")
    var command: [String] = []

    func validate() throws {
        try validating {
            if command.isEmpty { throw ValidationError("give the command after --, e.g. lockctl run db -- ./migrate") }
            guard (1...255).contains(lostExitCode) else {
                throw invalidValue("--lost-exit-code must be 1-255, not \(lostExitCode)")
            }
        }
    }

    func run() throws { try invocation.run() }

    var invocation: RunInvocation {
        RunInvocation(
            name: name, wait: waitOptions.spec, shield: shield, onLost: onLost, lostExitCode: lostExitCode,
            close: close, daemon: DaemonAddress(self), command: command)
    }
}

struct Shield: DaemonCommand {
    static let configuration = CommandConfiguration(
        commandName: "shield",
        abstract: "Run a command with SIGINT/SIGTERM/SIGHUP held back until it ends (no daemon needed), "
            + "or open/close a shield on a hold (`lockctl shield NAME --on`).")

    @Argument(help: "Lock name, to shield a hold instead of running a command.", completion: .lockNames) var name:
        String?
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
            var child = ChildProcess(arguments: command, shielded: true)
            try child.run(signals: signals, connection: nil, lockName: nil).finish()
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
