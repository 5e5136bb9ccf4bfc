import CLockSupport
import Glibc
import LockCore
import LockProtocol
import NIOCore

/// The per-connection hot path: each line is decoded, handed to the service synchronously on the
/// event loop, and answered; writes are flushed once per read burst.
final class ConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let service: LockService
    private var session: Session?
    private var stalled: Scheduled<Void>?

    /// The handlers of one connection, in pipeline order: back-pressure, line framing, this.
    static func handlers(for service: LockService, identity: ClientIdentity? = nil) -> [any ChannelHandler] {
        let decoder = LineFrameDecoder { service.configuration.limits }
        return [
            BackPressureHandler(), ByteToMessageHandler(decoder),
            ConnectionHandler(service: service, identity: identity),
        ]
    }

    /// The peer's credentials when the channel cannot tell them (tests and the fuzzer).
    private let givenIdentity: ClientIdentity?

    /// A handler for one connection; `identity` stands in for SO_PEERCRED where the channel has
    /// no socket (an `EmbeddedChannel`).
    init(service: LockService, identity: ClientIdentity? = nil) {
        self.service = service
        self.givenIdentity = identity
    }

    func channelActive(context: ChannelHandlerContext) {
        if let givenIdentity {
            session = service.open(context: context, identity: givenIdentity)
            context.fireChannelActive()
            return
        }
        guard let provider = context.channel as? any SocketOptionProvider else {
            context.close(promise: nil)
            return
        }
        let credentials: EventLoopFuture<lockd_ucred> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
        // On the channel's own loop the option is read synchronously, so the session exists
        // before the first line can arrive.
        credentials.assumeIsolated().whenComplete { result in
            switch result {
            case .success(let cred):
                let identity = ClientIdentity(pid: cred.pid, uid: cred.uid, gid: cred.gid)
                // nil: refused (too many clients); the service answers and closes.
                self.session = self.service.open(context: context, identity: identity)
            case .failure:
                context.close(promise: nil)
            }
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let session else { return }
        let line = unwrapInboundIn(data)
        service.handle(line: line.readableBytesView, from: session)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        service.endOfBurst()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let session, case ChannelEvent.inputClosed = event {
            service.inputClosed(session)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let session {
            self.session = nil
            service.close(session)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let session, error is LineFrameDecoder.LineTooLong {
            service.refuseOversizedLine(from: session)
        } else if let session, error is LineFrameDecoder.LineTimedOut {
            service.refuseSlowLine(from: session)
        } else {
            context.close(promise: nil)
        }
    }

    /// A client whose answers pile up (it does not read) is not read from either (NIO's
    /// `BackPressureHandler`, ahead in the pipeline), and is dropped when it stays so for
    /// `limits.write_timeout`.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            stalled?.cancel()
            stalled = nil
        } else if stalled == nil {
            let seconds = service.configuration.limits.writeTimeout
            stalled = context.eventLoop.assumeIsolated().scheduleTask(
                in: .nanoseconds(Seconds.signedNanoseconds(seconds))
            ) {
                [weak self] in
                self?.stalled = nil
                self?.service.dropStalled(self?.session, context: context, after: seconds)
            }
        }
        context.fireChannelWritabilityChanged()
    }
}
