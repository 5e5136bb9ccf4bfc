import ArgumentParser
import Glibc
import LockProtocol
import Logging
import ServiceLifecycle
import UnixSignals

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

    @Option(help: "Configuration file (default: \(LockdConfiguration.defaultFile), if it exists).")
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
        if let log, LockdConfiguration.LogTarget(rawValue: log) == nil {
            throw ValidationError("unknown --log \(log) (auto, journal, stderr)")
        }
    }

    func run() async throws {
        raiseFileLimit()
        let overrides = ConfigurationOverrides(
            socket: socket, shutdownGrace: shutdownGrace, logLevel: logLevel.flatMap(Logger.Level.init(rawValue:)),
            logTarget: log.flatMap(LockdConfiguration.LogTarget.init(rawValue:)), stateDirectory: stateDir,
            environmentSocket: getenv("LOCKD_SOCKET").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 })
        let file = config ?? LockdConfiguration.defaultFile
        let configuration: LockdConfiguration
        do {
            configuration = overrides.apply(to: try ConfigurationFile.load(file, required: config != nil))
        } catch {
            FileHandleStderr.write("lockd: bad configuration: \(error)\n")
            throw ExitCode(78)
        }

        let level = SharedLogLevel(configuration.logLevel)
        let toJournal =
            configuration.logTarget == .journal
            || (configuration.logTarget == .auto && JournalLogHandler.isStderrTheJournal)
        LoggingSystem.bootstrap { label -> any LogHandler in
            if toJournal { return JournalLogHandler(label: label, level: level) }
            return StderrLogHandler(label: label, level: level)
        }
        let logger = Logger(label: "lockd")

        // SIGHUP is trapped before anything can send it: its default action would kill lockd.
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        let server: LockdServer
        do {
            server = try LockdServer(configuration: configuration, logger: logger)
        } catch {
            FileHandleStderr.write("lockd: \(error)\n")
            throw ExitCode(1)
        }
        let reloader = ConfigurationReloader(
            file: file, fileIsRequired: config != nil, overrides: overrides, initial: configuration,
            hangups: hangups, server: server, logLevel: level, logger: logger)
        // The group traps SIGTERM/SIGINT before it starts the server, which binds the socket:
        // a client that can connect can also stop lockd gracefully.
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: server), .init(service: reloader)],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await group.run()
        } catch let failure as LockdServer.StartupFailure {
            FileHandleStderr.write("lockd: \(failure)\n")
            throw ExitCode(1)
        }
    }
}

/// Every client is a descriptor and every pid owner a pidfd: take the hard limit as the soft one
/// (systemd's advice for programs that do not use select(2)), so `limits.max_clients` can be met.
private func raiseFileLimit() {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
    limit.rlim_cur = min(limit.rlim_max, 1 << 20)
    _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
}

enum FileHandleStderr {
    static func write(_ text: String) {
        var bytes = Array(text.utf8)
        _ = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }
}
