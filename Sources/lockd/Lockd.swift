import ArgumentParser
import Dispatch
import Glibc
import LockClient
import Logging
import NIOCore
import NIOPosix

@main
struct Lockd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lockd",
        abstract: "Serve named locks over a Unix-domain socket.",
        discussion: "Protocol: one JSON object per line (docs/protocol.md). Talk to it with lockctl.")

    @Option(
        help:
            "Socket path (default: $LOCKD_SOCKET, else /run/lockd/lockd.sock for root, else $XDG_RUNTIME_DIR/lockd/lockd.sock)."
    )
    var socket: String?

    @Option(help: "Seconds to wait for open shields when stopping.")
    var shutdownGrace: Double = 30

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func validate() throws {
        guard shutdownGrace >= 0, shutdownGrace.isFinite else {
            throw ValidationError("--shutdown-grace must be a number of seconds >= 0")
        }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
    }

    func run() throws {
        LoggingSystem.bootstrap(StreamLogHandler.standardError)
        let logger = {
            var logger = Logger(label: "lockd")
            logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
            return logger
        }()
        let path = SocketPath.resolve(socket)

        do {
            if try SocketPreparation.prepare(path: path) {
                logger.notice("removed stale socket file", metadata: ["socket": "\(path)"])
            }
        } catch {
            FileHandleStderr.write("lockd: refusing to start: \(error)\n")
            throw ExitCode(1)
        }

        // One event loop owns the whole lock table: no locks on the hot path, strict ordering.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let grace = shutdownGrace
        let (bound, finished) = try loop.submit {
            let service = LockService(loop: loop, logger: logger, shutdownGrace: grace)
            return (service.bound, service.finishedFuture)
        }.wait()
        // Signals are handled before the socket exists: a client that can connect can also stop us.
        signal(SIGTERM, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        var signalSources: [any DispatchSourceSignal] = []
        for signalNumber in [SIGTERM, SIGINT] {
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler {
                loop.execute { bound.value.beginShutdown() }
            }
            source.activate()
            signalSources.append(source)
        }

        let listener: any Channel
        do {
            listener = try ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 1024)
                .childChannelOption(.allowRemoteHalfClosure, value: true)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            ByteToMessageHandler(LineFrameDecoder(maximumLength: 65536)))
                        try channel.pipeline.syncOperations.addHandler(ConnectionHandler(service: bound.value))
                    }
                }
                .bind(unixDomainSocketPath: path)
                .wait()
        } catch {
            FileHandleStderr.write("lockd: cannot listen on \(path): \(error)\n")
            throw ExitCode(1)
        }
        chmod(path, 0o666)
        try loop.submit {
            bound.value.listener = listener
        }.wait()

        logger.notice("lockd listening", metadata: ["socket": "\(path)", "pid": "\(getpid())"])
        try finished.wait()
        try? listener.close().wait()
        unlink(path)
        try? group.syncShutdownGracefully()
        logger.notice("lockd stopped")
    }
}

enum FileHandleStderr {
    static func write(_ text: String) {
        var bytes = Array(text.utf8)
        _ = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }
}
