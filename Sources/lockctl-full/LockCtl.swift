import ArgumentParser
import Glibc
import LockProtocol
import LockctlCore

/// lockctl's exit status (LockctlCore's), which the shared code throws; argument-parser's type of
/// the same name is spelled `ArgumentParser.ExitCode` where argument-parser must see it.
typealias ExitCode = LockctlCore.ExitCode

/// Runs a check of a `validate()`: a refusal of lockctl's own (which printed why) becomes
/// argument-parser's exit code, which argument-parser exits with silently.
func validating(_ check: () throws -> Void) throws {
    do {
        try check()
    } catch let code as ExitCode {
        throw ArgumentParser.ExitCode(code.rawValue)
    }
}

@main
struct LockCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lockctl",
        abstract: "Use lockd's named locks from shell scripts.",
        discussion: """
            Exit codes: 0 ok; 1 conflict (busy, timeout, deadlock; see --conflict-exit-code); 2 not held; \
            64 usage; 65 invalid value; 69 daemon unreachable, gone or not answering; 70 other failure; \
            75 daemon stopping or a daemon limit reached; 77 denied. `run` and `shield` end as the \
            command ended: with its status, or by the same signal.
            """,
        version: lockdVersion,
        subcommands: [
            Acquire.self, Release.self, Renew.self, Run.self, Shield.self, Status.self, Break.self, Metrics.self,
            Flock.self,
            FlockKeeper.self,
        ])

    /// Called as `lflock` (a link to lockctl-full, or to lockctl, which runs this binary), the
    /// binary is `lockctl flock`. The lean lockctl ran the lines QuickParse reads already.
    static func main() {
        var arguments = Array(CommandLine.arguments.dropFirst())
        let invokedAs = CommandLine.arguments.first.map { $0.split(separator: "/").last.map(String.init) ?? $0 }
        if invokedAs == "lflock" { arguments.insert("flock", at: 0) }
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
        } catch let code as ExitCode {
            Glibc.exit(code.rawValue)
        } catch {
            exit(withError: error)
        }
    }

    @OptionGroup var global: GlobalOptions
}

/// Options every command accepts.
struct GlobalOptions: ParsableArguments {
    @Option(
        help:
            "lockd's socket (default: $LOCKD_SOCKET, else your own lockd's socket, else the system's, /run/lockd/lockd.sock)."
    )
    var socket: String?

    @Option(help: "Seconds to wait for lockd to answer anything but a lock wait (default: 10).")
    var daemonTimeout: String?

    func validate() throws {
        try validating {
            if socket?.isEmpty == true { throw invalidValue("--socket needs a path, not an empty string") }
            if let daemonTimeout { _ = try seconds(daemonTimeout, option: "--daemon-timeout") }
        }
    }
}

/// Whose hold a command is about; the default is the calling shell (lockctl's parent process).
struct OwnerOptions: ParsableArguments {
    typealias Ancestor = LockctlCore.Ancestor

    @Option(help: "Owner process id (default: the parent process, i.e. the calling shell; in a script, --pid $$).")
    var pid: Int32?

    @Option(help: "Owner: parent (default), shell (nearest shell ancestor, past wrappers) or session-leader.")
    var owner: Ancestor?

    @Option(help: "Owner token (a lease; see --ttl and `renew`).")
    var token: String?

    func validate() throws {
        if [pid != nil, token != nil, owner != nil].filter({ $0 }).count > 1 {
            throw ValidationError("use one of --pid, --owner and --token")
        }
    }
}
