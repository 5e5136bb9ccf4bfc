import ArgumentParser
import LockProtocol
import LockServer
import Logging

@main
struct Lockd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lockd",
        abstract: "Serve named locks over a Unix-domain socket.",
        discussion: """
            Protocol: one JSON object per line (docs/protocol.md). Talk to it with lockctl.
            Settings come from the configuration file (config/lockd.toml documents each key); the \
            options below override it. SIGHUP reloads the file; SIGTERM or SIGINT stops lockd gracefully.
            Exit status: 0 after a stop, 1 when it cannot serve its socket, 78 for a bad configuration.
            """,
        version: lockdVersion)

    @Option(help: "Configuration file (default: \(Daemon.defaultConfigurationFile), if it exists).")
    var config: String?

    @Option(
        help:
            "Socket path (default: $LOCKD_SOCKET, else socket.path of the file, else /run/lockd/lockd.sock for root, else $XDG_RUNTIME_DIR/lockd/lockd.sock)."
    )
    var socket: String?

    @Option(help: "Seconds to wait for open shields when stopping (shutdown.grace).")
    var shutdownGrace: Double?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical (log.level).")
    var logLevel: String?

    @Option(
        help:
            "State directory for pid and token holds (state.directory; default $STATE_DIRECTORY, else /var/lib/lockd for root, else ~/.local/state/lockd; \"\" keeps no state)."
    )
    var stateDir: String?

    @Option(help: "Where logs go: auto (the journal under systemd, else stderr), journal, stderr (log.target).")
    var log: String?

    func validate() throws {
        if let shutdownGrace, !(shutdownGrace >= 0 && shutdownGrace.isFinite) {
            throw ValidationError("--shutdown-grace must be a number of seconds >= 0")
        }
        if let logLevel, Logger.Level(rawValue: logLevel) == nil {
            throw ValidationError("unknown --log-level \(logLevel)")
        }
        if let log, !Daemon.logTargets.contains(log) {
            throw ValidationError("unknown --log \(log) (auto, journal, stderr)")
        }
    }

    func run() async throws {
        let options = DaemonOptions(
            configurationFile: config, socket: socket, shutdownGrace: shutdownGrace,
            logLevel: logLevel.flatMap(Logger.Level.init(rawValue:)), stateDirectory: stateDir, logTarget: log)
        let status = try await Daemon.run(options)
        if status != 0 { throw ExitCode(status) }
    }
}
