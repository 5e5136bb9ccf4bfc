import LockClient
import LockCore
import LockProtocol
import NIOCore

/// One request on the wire and where its answer goes.
struct PendingRequest {
    var request: Request
    var promise: EventLoopPromise<Answer>
}

/// The client end of one connection, on its event loop: writes requests, matches answers to them
/// by id, hands `revoked` events on, and fails whatever is pending when the connection ends.
final class LockdChannelHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = PendingRequest
    typealias OutboundOut = ByteBuffer

    private var pending: [RequestID: EventLoopPromise<Answer>] = [:]
    private var buffer: ByteBuffer?
    private let path: String
    private let revoked: @Sendable (Revocation) -> Void
    private let closed: @Sendable () -> Void

    init(
        path: String,
        revoked: @escaping @Sendable (Revocation) -> Void,
        closed: @escaping @Sendable () -> Void
    ) {
        self.path = path
        self.revoked = revoked
        self.closed = closed
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let item = unwrapOutboundIn(data)
        pending[item.request.id] = item.promise
        var bytes: [UInt8] = []
        item.request.json.write(to: &bytes)
        bytes.append(UInt8(ascii: "\n"))
        context.write(wrapOutboundOut(context.channel.allocator.buffer(bytes: bytes)), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if buffer == nil {
            buffer = incoming
        } else {
            buffer!.writeBuffer(&incoming)
        }
        while let newline = buffer!.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
            let length = newline - buffer!.readerIndex
            let line = buffer!.readSlice(length: length)!
            buffer!.moveReaderIndex(forwardBy: 1)
            deliver(line.readableBytesView, context: context)
        }
        if buffer!.readableBytes == 0 { buffer = nil }
    }

    private func deliver(_ line: ByteBufferView, context: ChannelHandlerContext) {
        let message: ServerMessage
        do {
            message = try ServerMessage(line: line)
        } catch {
            fail(ClientError(.badResponse, "lockd at \(path) sent \(error.description)"), context: context)
            return
        }
        switch message {
        case .revoked(let revocation):
            revoked(revocation)
        case .changed:
            break  // LockdClient never watches.
        case .answer(let answer):
            if let id = answer.id, let promise = pending.removeValue(forKey: id) {
                promise.succeed(answer)
            } else if let error = answer.error {
                // `"id": null`: lockd refuses the connection (too many clients, stopping) and closes it.
                fail(ClientError(.refused, error.message, code: error.code), context: context)
            }
        }
    }

    private func fail(_ error: ClientError, context: ChannelHandlerContext) {
        let failed = pending
        pending = [:]
        for promise in failed.values { promise.fail(error) }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        let failed = pending
        pending = [:]
        let error = ClientError(.connectionLost, "lockd at \(path) closed the connection")
        for promise in failed.values { promise.fail(error) }
        closed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(ClientError(.connectionLost, "lost the connection to lockd at \(path): \(error)"), context: context)
    }
}
