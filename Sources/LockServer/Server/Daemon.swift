import CLockSupport
import Glibc
import Logging
import ServiceLifecycle
import UnixSignals

/// What lockd's command line asks for; `nil` leaves a setting to the configuration file.
package struct DaemonOptions: Sendable {
    package var configurationFile: String?
    package var socket: String?
    package var shutdownGrace: Double?
    package var logLevel: Logger.Level?
    package var stateDirectory: String?
    package var logTarget: String?
    /// The cluster to join (`--backend etcd`), or `nil` to leave it to the file.
    package var cluster: ClusterSettings?
    /// `--backend local`: no cluster, whatever the file says.
    package var localOnly = false

    package init(
        configurationFile: String?, socket: String?, shutdownGrace: Double?, logLevel: Logger.Level?,
        stateDirectory: String?, logTarget: String?
    ) {
        self.configurationFile = configurationFile
        self.socket = socket
        self.shutdownGrace = shutdownGrace
        self.logLevel = logLevel
        self.stateDirectory = stateDirectory
        self.logTarget = logTarget
    }
}

/// lockd's whole run: configuration, logging, the server and the reloader under one service
/// group. The `lockd` executable only parses its command line and calls ``run(_:)``.
package enum Daemon {
    /// Where lockd reads its configuration when no file is named.
    package static let defaultConfigurationFile = LockdConfiguration.defaultFile

    /// The accepted values of `--log`.
    package static let logTargets = LockdConfiguration.LogTarget.allCases.map(\.rawValue)

    /// Runs lockd until it is stopped.
    /// - Returns: the exit status: 0 after a stop, 1 when it cannot serve, 78 for a bad configuration.
    package static func run(_ options: DaemonOptions) async throws -> Int32 {
        lockd_raise_file_limit()
        let overrides = ConfigurationOverrides(
            socket: options.socket, shutdownGrace: options.shutdownGrace, logLevel: options.logLevel,
            logTarget: options.logTarget.flatMap(LockdConfiguration.LogTarget.init(rawValue:)),
            stateDirectory: options.stateDirectory,
            environmentSocket: getenv("LOCKD_SOCKET").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 },
            cluster: options.cluster, localOnly: options.localOnly)
        let file = options.configurationFile ?? LockdConfiguration.defaultFile
        let required = options.configurationFile != nil
        let configuration: LockdConfiguration
        do {
            configuration = overrides.apply(to: try ConfigurationFile.load(file, required: required))
        } catch {
            Stderr.write("lockd: bad configuration: \(error)\n")
            return 78
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
            Stderr.write("lockd: \(error)\n")
            return 1
        }
        let reloader = ConfigurationReloader(
            file: file, fileIsRequired: required, overrides: overrides, initial: configuration,
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
            Stderr.write("lockd: \(failure)\n")
            return 1
        }
        return 0
    }
}

/// Unbuffered writes to standard error, for the lines lockd prints before logging is set up.
enum Stderr {
    static func write(_ text: String) {
        var bytes = Array(text.utf8)
        _ = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }
}
