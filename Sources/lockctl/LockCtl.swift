import ArgumentParser
import LockProtocol

@main
struct LockCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lockctl",
        abstract: "Use lockd's named locks from shell scripts.",
        discussion: """
            Exit codes: 0 ok; 1 conflict (busy, timeout, deadlock; see --conflict-exit-code); 2 not held; \
            64 usage; 65 invalid value; 69 daemon unreachable; 70 other failure; 75 daemon shutting down; \
            77 denied. `run` and `shield` exit with the command's status, or 128+signal.
            """,
        version: lockdVersion,
        subcommands: [
            Acquire.self, Release.self, Renew.self, Run.self, Shield.self, Status.self, Break.self,
        ])

    @OptionGroup var global: GlobalOptions
}

/// Options every command accepts.
struct GlobalOptions: ParsableArguments {
    @Option(help: "lockd's socket (default: $LOCKD_SOCKET, else the daemon's default path).")
    var socket: String?
}

/// Whose hold a command is about; the default is the calling shell (lockctl's parent process).
struct OwnerOptions: ParsableArguments {
    @Option(help: "Owner process id (default: the parent process, i.e. the calling shell).")
    var pid: Int32?

    @Option(help: "Owner token (a lease; see --ttl and `renew`).")
    var token: String?

    func validate() throws {
        if pid != nil, token != nil { throw ValidationError("use either --pid or --token, not both") }
    }
}
