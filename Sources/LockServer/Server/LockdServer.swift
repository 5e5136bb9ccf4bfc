import Glibc
import LockClient
import LockCluster
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// The lock service as a swift-service-lifecycle `Service`: it listens (on systemd's socket or
/// its own), says READY=1, and on graceful shutdown drains open shields before it returns.
struct LockdServer: Service, CustomStringConvertible {
    /// Why lockd cannot start; printed as one line.
    struct StartupFailure: Error, CustomStringConvertible {
        var description: String
    }

    let service: NIOLoopBound<LockService>
    let notifier = SystemdNotifier()
    private let group: MultiThreadedEventLoopGroup
    private let socketPath: String
    private let socketMode: UInt32
    private let metricsAddress: MetricsAddress?
    private let logger: Logger
    private let finished: EventLoopFuture<Void>

    var description: String { "LockdServer" }

    init(configuration: LockdConfiguration, logger: Logger) throws {
        // One event loop owns the whole lock table: no locks on the hot path, strict ordering.
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let notifier = self.notifier
        let stateDirectory = configuration.stateDirectory ?? LockdConfiguration.defaultStateDirectory()
        (service, finished) = try loop.submit {
            let service = LockService(loop: loop, logger: logger, configuration: configuration, notifier: notifier)
            if !stateDirectory.isEmpty {
                do {
                    let (journal, contents) = try StateJournal.open(directory: stateDirectory)
                    try service.restore(from: contents, journal: journal)
                } catch {
                    service.abandon()
                    throw StartupFailure(description: "cannot use the state directory: \(error)")
                }
            }
            if let settings = configuration.cluster {
                service.join(settings, transport: GatewayTransport(endpoints: settings.endpoints, loop: loop))
            }
            return (service.bound, service.finishedFuture)
        }.wait()
        socketPath = configuration.socketPath ?? SocketPath.defaultPath()
        socketMode = configuration.socketMode
        metricsAddress = configuration.metricsListen
        self.logger = logger
    }

    func run() async throws {
        let service = self.service
        let loop = service.eventLoop
        let listener: any Channel
        let ownsPath: Bool
        do {
            (listener, ownsPath) = try await listen()
        } catch {
            // Never served: complete the service's promise and stop its loop before exiting.
            try? await loop.submit { service.value.abandon() }.get()
            try? await group.shutdownGracefully()
            throw error
        }
        // Metrics are for operators: a listener that cannot start is logged, and locks are served.
        var metricsChannel: (any Channel)?
        if let metricsAddress {
            do {
                metricsChannel = try await MetricsEndpoint.bind(metricsAddress, group: group, service: service)
                logger.notice("metrics listening", metadata: ["address": "\(metricsAddress)"])
            } catch {
                logger.error(
                    "cannot serve metrics", metadata: ["address": "\(metricsAddress)", "error": "\(error)"])
            }
        }
        try await loop.submit {
            service.value.listener = listener
            service.value.announceReady()
        }.get()
        try await withGracefulShutdownHandler {
            try await finished.get()
        } onGracefulShutdown: {
            loop.execute { service.value.beginShutdown() }
        }
        try? await listener.close()
        if ownsPath { unlink(socketPath) }
        if let metricsChannel {
            try? await metricsChannel.close()
            if case .unix(let path) = metricsAddress { unlink(path) }
        }
        try await group.shutdownGracefully()
        logger.notice("lockd stopped")
    }

    /// Takes the socket systemd passed, or prepares the path and binds one.
    /// - Returns: the listening channel, and whether lockd made the socket file (and removes it).
    private func listen() async throws -> (any Channel, Bool) {
        let service = self.service
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // Above the high mark the client is not reading its answers: stop reading its
                    // requests (BackPressureHandler) instead of buffering without bound.
                    // The initializer runs on the service's one loop, as every later read does: take
                    // the service once rather than through the loop check of each access.
                    let lockService = service.value
                    let high = lockService.configuration.limits.maxOutputBytes
                    try channel.syncOptions?.setOption(
                        .writeBufferWaterMark, value: .init(low: high / 2, high: high))
                    try channel.pipeline.syncOperations.addHandlers(ConnectionHandler.handlers(for: lockService))
                }
            }
        do {
            if let fd = try SocketActivation.inheritedSocket() {
                let channel = try await bootstrap.withBoundSocket(fd).get()
                logger.notice(
                    "lockd listening (socket activation)",
                    metadata: ["socket": "\(SocketActivation.boundPath(of: fd))", "pid": "\(getpid())"])
                return (channel, false)
            }
        } catch let failure as SocketActivation.Failure {
            throw StartupFailure(description: failure.description)
        }
        do {
            if try SocketPreparation.prepare(path: socketPath) {
                logger.notice("removed stale socket file", metadata: ["socket": "\(socketPath)"])
            }
        } catch {
            throw StartupFailure(description: "refusing to start: \(error)")
        }
        let channel: any Channel
        do {
            channel = try await bootstrap.bind(unixDomainSocketPath: socketPath).get()
        } catch {
            throw StartupFailure(description: "cannot listen on \(socketPath): \(error)")
        }
        chmod(socketPath, mode_t(socketMode))
        logger.notice("lockd listening", metadata: ["socket": "\(socketPath)", "pid": "\(getpid())"])
        return (channel, true)
    }
}
