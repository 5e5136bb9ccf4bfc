import LockCore
import LockProtocol
import Logging
import NIOCore
import NIOEmbedded

@testable import LockServer

/// A real ``LockService`` on an embedded loop, with connections that are `EmbeddedChannel`s
/// through the real line decoder and connection handler: the daemon in process, no sockets.
final class ServiceHarness {
    let loop = EmbeddedEventLoop()
    let processes = SimulatedProcesses()
    let service: LockService

    init(configuration: LockdConfiguration = LockdConfiguration()) {
        let loop = self.loop
        service = LockService(
            loop: loop, logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }, configuration: configuration,
            notifier: SystemdNotifier(), processes: processes,
            wallClock: { 1_796_000_000 + Double(loop.now.uptimeNanoseconds) / 1e9 })
        processes.spawn(1, parent: 1, uid: 0)
    }

    deinit { service.abandon() }

    /// A connected client whose peer is `pid` (started as a child of pid 1) with `uid`.
    func connect(pid: Int32, uid: UInt32 = 1000) throws -> EmbeddedChannel {
        processes.spawn(pid, parent: 1, uid: uid)
        let channel = EmbeddedChannel(loop: loop)
        let service = self.service
        let identity = ClientIdentity(pid: pid, uid: uid, gid: uid)
        try channel.pipeline.syncOperations.addHandlers(ConnectionHandler.handlers(for: service, identity: identity))
        channel.connect(to: try SocketAddress(unixDomainSocketPath: "/test"), promise: nil)
        loop.run()
        return channel
    }

    /// Sends raw bytes and returns the answer lines that came back.
    func send(_ text: String, on channel: EmbeddedChannel) throws -> [JSONValue] {
        try channel.writeInbound(ByteBuffer(string: text))
        loop.run()
        return try answers(on: channel)
    }

    /// The answer lines written to `channel` so far.
    func answers(on channel: EmbeddedChannel) throws -> [JSONValue] {
        var bytes: [UInt8] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { bytes += buffer.readableBytesView }
        return try bytes.split(separator: UInt8(ascii: "\n")).map { try JSONValue.parse($0) }
    }
}
