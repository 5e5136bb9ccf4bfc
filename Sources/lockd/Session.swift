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

    /// The client's primary and supplementary groups, read once when an access rule first needs
    /// them. A client that is gone by then has only its primary group: rules only grant, so
    /// missing groups can only refuse.
    lazy var groups: Set<UInt32> = Set(ProcFS.supplementaryGroups(of: identity.pid) + [identity.gid])

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
