import LockCore
import LockProtocol
import NIOCore

/// One client connection as the service sees it. Confined to the service's event loop.
final class Session {
    let id: SessionID
    let identity: ClientIdentity
    let context: ChannelHandlerContext
    /// The ids of acquires that wait for their answer, by the engine's request tag.
    var pending: [String: RequestID] = [:]
    /// The client half-closed: close once every pending acquire is answered.
    var inputClosed = false
    /// Answers written since the last flush; they go out together, as one write.
    private var outbound: ByteBuffer?
    /// Reads the client's groups when an access rule first needs them.
    private let readGroups: (Int32, UInt32) -> Set<UInt32>

    init(
        id: SessionID, identity: ClientIdentity, context: ChannelHandlerContext,
        groups: @escaping (Int32, UInt32) -> Set<UInt32>
    ) {
        self.id = id
        self.identity = identity
        self.context = context
        self.readGroups = groups
    }

    var requester: Requester { Requester(session: id, identity: identity) }

    /// The client's primary and supplementary groups, read once when an access rule first needs
    /// them. A client that is gone by then has only its primary group: rules only grant, so
    /// missing groups can only refuse.
    lazy var groups: Set<UInt32> = readGroups(identity.pid, identity.gid)

    func key(_ id: RequestID) -> RequestKey { RequestKey(session: self.id, tag: id.description) }

    /// Whether the client has half-closed and has nothing left to wait for: then it is closed.
    var isDone: Bool { inputClosed && pending.isEmpty }

    /// Queues one line for this client; `true` when it is the first since the last flush.
    func send(_ message: JSONValue, scratch: inout [UInt8]) -> Bool {
        scratch.removeAll(keepingCapacity: true)
        message.write(to: &scratch)
        scratch.append(UInt8(ascii: "\n"))
        if outbound == nil {
            outbound = context.channel.allocator.buffer(bytes: scratch)
            return true
        }
        outbound!.writeBytes(scratch)
        return false
    }

    /// Writes the queued answers, and `promise` completes once they (or nothing) are out.
    func flush(promise: EventLoopPromise<Void>? = nil) {
        let buffer = outbound ?? context.channel.allocator.buffer(capacity: 0)
        outbound = nil
        if buffer.readableBytes > 0 || promise != nil { context.writeAndFlush(NIOAny(buffer), promise: promise) }
    }

    /// Writes what is queued, then closes the connection.
    func flushAndClose() {
        let context = self.context
        let flushed = context.eventLoop.makePromise(of: Void.self)
        flush(promise: flushed)
        flushed.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }
}
