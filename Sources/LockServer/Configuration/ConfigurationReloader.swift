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
            current.limits = loaded.limits
            current.access = loaded.access
            current.shutdownGrace = loaded.shutdownGrace
            current.logLevel = loaded.logLevel
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

    func apply(to file: LockdConfiguration) -> LockdConfiguration {
        var configuration = file
        if let path = socket ?? environmentSocket { configuration.socketPath = path }
        if let shutdownGrace { configuration.shutdownGrace = shutdownGrace }
        if let logLevel { configuration.logLevel = logLevel }
        if let logTarget { configuration.logTarget = logTarget }
        if let stateDirectory { configuration.stateDirectory = stateDirectory }
        return configuration
    }
}

/// The differences between two configurations, as lines for the log.
struct ConfigurationChanges {
    var applied: [String] = []
    var needingRestart: [String] = []

    init(from old: LockdConfiguration, to new: LockdConfiguration) {
        func note<Value: Equatable>(_ name: String, _ before: Value, _ after: Value, restart: Bool = false) {
            guard before != after else { return }
            if restart {
                needingRestart.append(name)
            } else {
                applied.append("\(name): \(Self.show(before)) -> \(Self.show(after))")
            }
        }
        note("socket.path", old.socketPath, new.socketPath, restart: true)
        note("socket.mode", old.socketMode, new.socketMode, restart: true)
        note("state.directory", old.stateDirectory, new.stateDirectory, restart: true)
        note("log.target", old.logTarget, new.logTarget, restart: true)
        note("log.level", old.logLevel, new.logLevel)
        note("shutdown.grace", old.shutdownGrace, new.shutdownGrace)
        note("limits.max_line_bytes", old.limits.maxLineBytes, new.limits.maxLineBytes)
        note("limits.max_clients", old.limits.maxClients, new.limits.maxClients)
        note("limits.default_wait", old.limits.defaultWait, new.limits.defaultWait)
        note("limits.max_wait", old.limits.maxWait, new.limits.maxWait)
        note("limits.default_ttl", old.limits.defaultTTL, new.limits.defaultTTL)
        note("limits.max_ttl", old.limits.maxTTL, new.limits.maxTTL)
        note(
            "limits.max_pending_per_connection", old.limits.maxPendingPerConnection, new.limits.maxPendingPerConnection)
        note("limits.max_holds_per_uid", old.limits.maxHoldsPerUID, new.limits.maxHoldsPerUID)
        note("limits.max_waiters_per_uid", old.limits.maxWaitersPerUID, new.limits.maxWaitersPerUID)
        note("limits.max_name_bytes", old.limits.maxNameBytes, new.limits.maxNameBytes)
        note("limits.max_output_bytes", old.limits.maxOutputBytes, new.limits.maxOutputBytes)
        note("limits.write_timeout", old.limits.writeTimeout, new.limits.writeTimeout)
        note("limits.line_timeout", old.limits.lineTimeout, new.limits.lineTimeout)
        if old.access != new.access {
            applied.append("access: \(new.access.rules.count) rule(s), break by \(new.access.breakers.summary)")
        }
    }

    private static func show(_ value: some Equatable) -> String {
        if let optional = value as? Double? { return optional.map { "\($0)" } ?? "inf" }
        return "\(value)"
    }
}
