import LockCore
import LockProtocol
import NIOCore

/// One client connection as the service sees it. Confined to the service's event loop.
final class Session {
    /// An acquire that waits for its answer.
    struct PendingAcquire {
        var id: RequestID
        var timer: Scheduled<Void>?
    }

    let id: SessionID
    let identity: ClientIdentity
    let context: ChannelHandlerContext
    var pending: [String: PendingAcquire] = [:]
    /// The client half-closed: close once every pending acquire is answered.
    var inputClosed = false
    var needsFlush = false

    init(id: SessionID, identity: ClientIdentity, context: ChannelHandlerContext) {
        self.id = id
        self.identity = identity
        self.context = context
    }

    var requester: Requester { Requester(session: id, identity: identity) }

    func key(_ id: RequestID) -> RequestKey { RequestKey(session: self.id, tag: id.description) }

    /// Queues one line for this client; the service flushes at the end of each event.
    func send(_ message: JSONValue, scratch: inout [UInt8]) {
        scratch.removeAll(keepingCapacity: true)
        message.write(to: &scratch)
        scratch.append(UInt8(ascii: "\n"))
        var buffer = context.channel.allocator.buffer(capacity: scratch.count)
        buffer.writeBytes(scratch)
        context.write(NIOAny(buffer), promise: nil)
        needsFlush = true
    }
}
