import Logging
import NIOCore
import ServiceLifecycle
import UnixSignals

/// Re-reads the configuration file on SIGHUP. What can change at run time (log level, limits,
/// waits, leases, shutdown grace) changes, and each change is logged; a bad file is logged and
/// the configuration in force stays.
struct ConfigurationReloader: Service, CustomStringConvertible {
    let file: String
    let fileIsRequired: Bool
    let overrides: ConfigurationOverrides
    let initial: LockdConfiguration
    let hangups: UnixSignalsSequence
    let server: LockdServer
    let logLevel: SharedLogLevel
    let logger: Logger

    var description: String { "ConfigurationReloader(\(file))" }

    func run() async {
        var current = initial
        for await _ in hangups.cancelOnGracefulShutdown() {
            server.notifier.reloading()
            defer { server.notifier.send("READY=1") }
            let loaded: LockdConfiguration
            do {
                loaded = overrides.apply(to: try ConfigurationFile.load(file, required: fileIsRequired))
            } catch {
                logger.error("reload failed; the configuration in force stays", metadata: ["error": "\(error)"])
                continue
            }
            let changes = ConfigurationChanges(from: current, to: loaded)
            for restart in changes.needingRestart {
                logger.warning("\(restart) changed in \(file); it takes effect at the next start")
            }
            for change in changes.applied {
                logger.notice("configuration changed: \(change)")
            }
            if changes.applied.isEmpty { logger.notice("configuration reloaded; nothing changed") }
            logLevel.level = loaded.logLevel
            let service = server.service
            try? await service.eventLoop.submit { service.value.apply(loaded) }.get()
            current.reload(from: loaded)
        }
    }
}

/// What the command line says; it overrides the file, at start and at every reload.
struct ConfigurationOverrides: Sendable {
    var socket: String?
    var shutdownGrace: Double?
    var logLevel: Logger.Level?
    var logTarget: LockdConfiguration.LogTarget?
    var stateDirectory: String?
    /// `$LOCKD_SOCKET`, which ranks below `--socket` and above the file.
    var environmentSocket: String?
    var cluster: ClusterSettings?
    var localOnly = false

    func apply(to file: LockdConfiguration) -> LockdConfiguration {
        var configuration = file
        if let path = socket ?? environmentSocket { configuration.socketPath = path }
        if let shutdownGrace { configuration.shutdownGrace = shutdownGrace }
        if let logLevel { configuration.logLevel = logLevel }
        if let logTarget { configuration.logTarget = logTarget }
        if let stateDirectory { configuration.stateDirectory = stateDirectory }
        if let cluster { configuration.cluster = cluster }
        if localOnly { configuration.cluster = nil }
        return configuration
    }
}

/// The differences between two configurations, as lines for the log.
struct ConfigurationChanges {
    /// `key: old -> new` for each changed key a reload applies.
    var applied: [String] = []
    /// Each changed key that waits for the next start.
    var needingRestart: [String] = []

    init(from old: LockdConfiguration, to new: LockdConfiguration) {
        for key in ConfigurationKey.all {
            let (before, after) = (key.show(old), key.show(new))
            guard before != after else { continue }
            if key.appliesOnReload {
                applied.append("\(key.path): \(before) -> \(after)")
            } else {
                needingRestart.append(key.path)
            }
        }
    }
}

extension LockdConfiguration {
    /// Takes from `new` every setting a reload applies; the others keep their value.
    mutating func reload(from new: LockdConfiguration) {
        for key in ConfigurationKey.all where key.appliesOnReload { key.transfer(&self, new) }
    }
}
