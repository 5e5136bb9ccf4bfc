import DequeModule
import LockProtocol
import NIOCore
import NIOHTTP1
import NIOPosix

/// etcd's v3 JSON gateway over HTTP/1.1 (grpc-gateway, on every member's client port): each
/// call is a POST of a JSON body; a unary answer is one JSON object, a stream's answer is a
/// chunked body of one `{"result": …}` object per line.
///
/// Unary calls share a few keep-alive connections, each pipelined (etcd answers in order); the
/// gateway works through one connection's requests one at a time, so concurrent calls (keys of
/// many locks) need several. Each stream has a connection of its own. When a member cannot be reached, times out or says it
/// has no leader, the next call goes to the next endpoint. Confined to its loop.
public final class GatewayTransport: EtcdTransport {
    public let loop: any EventLoop
    private let endpoints: [Endpoint]
    private var current = 0
    /// The unary connections (`nil` where none is open) and the calls each has in flight.
    private var unary: [EventLoopFuture<any Channel>?]
    private var inFlight: [Int]
    private var streams: [ObjectIdentifier: any Channel] = [:]
    private var isShutDown = false

    /// A member's client address.
    public struct Endpoint: Sendable, Equatable, CustomStringConvertible {
        public var host: String
        public var port: Int

        /// Reads `http://HOST:PORT` (the scheme is optional; https is not supported yet).
        public init?(url: String) {
            var rest = Substring(url)
            if rest.hasPrefix("http://") { rest = rest.dropFirst(7) }
            if rest.hasSuffix("/") { rest = rest.dropLast() }
            guard !rest.contains("://"), let colon = rest.lastIndex(of: ":"),
                let port = Int(rest[rest.index(after: colon)...]), (1...65535).contains(port), colon > rest.startIndex
            else { return nil }
            host = String(rest[..<colon])
            self.port = port
        }

        public var description: String { "http://\(host):\(port)" }
    }

    /// - Parameter connections: how many unary calls may be worked on at once.
    public init(endpoints: [Endpoint], loop: any EventLoop, connections: Int = 16) {
        precondition(!endpoints.isEmpty, "etcd needs at least one endpoint")
        self.endpoints = endpoints
        self.loop = loop
        self.unary = Array(repeating: nil, count: max(1, connections))
        self.inFlight = Array(repeating: 0, count: max(1, connections))
    }

    /// The endpoint the next connection goes to.
    public var endpoint: Endpoint { endpoints[current] }

    public func call(_ path: String, _ body: JSONValue, timeout: TimeAmount) -> EventLoopFuture<JSONValue> {
        loop.preconditionInEventLoop()
        let promise = loop.makePromise(of: JSONValue.self)
        let request = Self.request(path, body)
        let (slot, channel) = unaryChannel()
        inFlight[slot] += 1
        channel.assumeIsolated().whenComplete { result in
            switch result {
            case .success(let channel):
                // The handler is in the pipeline by now; on this loop it is reached synchronously.
                let call = GatewayCall(request: request, promise: promise)
                try? channel.pipeline.syncOperations.handler(type: UnaryHandler.self).send(call)
            case .failure(let error):
                promise.fail(error)
            }
        }
        let timer = loop.assumeIsolated().scheduleTask(in: timeout) { [weak self] in
            promise.fail(
                EtcdError(.timedOut, "etcd at \(self?.endpoint.description ?? "?") did not answer \(path) in time"))
            // Later answers on this connection would be out of step: start again elsewhere.
            self?.dropUnary(channel, failed: true)
        }
        promise.futureResult.assumeIsolated().whenComplete { [weak self] result in
            timer.cancel()
            self?.inFlight[slot] -= 1
            if case .failure(let error as EtcdError) = result, error.isMemberTrouble {
                self?.dropUnary(channel, failed: true)
            }
        }
        return promise.futureResult
    }

    public func stream(
        _ path: String, _ body: JSONValue, headers: [(String, String)], onMessage: @escaping (JSONValue) -> Void
    ) -> EtcdStream {
        loop.preconditionInEventLoop()
        let ended = loop.makePromise(of: Void.self)
        var request = Self.request(path, body)
        request.headers.append(contentsOf: headers)
        let handler = NIOLoopBound(StreamHandler(onMessage: onMessage, ended: ended), eventLoop: loop)
        let connecting = connect { try $0.pipeline.syncOperations.addHandler(handler.value) }
        var closed = false
        connecting.assumeIsolated().whenComplete { [weak self] result in
            switch result {
            case .success(let channel):
                if closed || self?.isShutDown != false {
                    channel.close(promise: nil)
                    return
                }
                self?.streams[ObjectIdentifier(channel)] = channel
                channel.closeFuture.assumeIsolated().whenComplete { _ in self?.streams[ObjectIdentifier(channel)] = nil
                }
                handler.value.send(request)
            case .failure(let error):
                self?.advance()
                ended.fail(error)
            }
        }
        ended.futureResult.assumeIsolated().whenFailure { [weak self] error in
            if let error = error as? EtcdError, error.isMemberTrouble { self?.advance() }
        }
        return EtcdStream(ended: ended.futureResult) {
            closed = true
            connecting.whenSuccess { $0.close(promise: nil) }
        }
    }

    public func shutdown() {
        loop.preconditionInEventLoop()
        isShutDown = true
        for connection in unary { connection?.whenSuccess { $0.close(promise: nil) } }
        unary = unary.map { _ in nil }
        for channel in streams.values { channel.close(promise: nil) }
        streams = [:]
    }

    // MARK: - Connections

    /// A connection for the next call: an open one with nothing in flight, else a new one while
    /// there is room, else the least busy (its calls wait in its pipeline).
    private func unaryChannel() -> (Int, EventLoopFuture<any Channel>) {
        let slot =
            unary.indices.first { unary[$0] != nil && inFlight[$0] == 0 }
            ?? unary.indices.first { unary[$0] == nil }
            ?? unary.indices.min { inFlight[$0] < inFlight[$1] }!
        if let open = unary[slot] { return (slot, open) }
        let connecting = connect { try $0.pipeline.syncOperations.addHandler(UnaryHandler()) }
        unary[slot] = connecting
        connecting.assumeIsolated().whenComplete { [weak self] result in
            switch result {
            case .success(let channel):
                channel.closeFuture.assumeIsolated().whenComplete { _ in self?.dropUnary(connecting, failed: false) }
            case .failure:
                self?.dropUnary(connecting, failed: true)
            }
        }
        return (slot, connecting)
    }

    private func dropUnary(_ channel: EventLoopFuture<any Channel>, failed: Bool) {
        guard let slot = unary.firstIndex(where: { $0 === channel }) else { return }
        unary[slot] = nil
        if failed { advance() }
        channel.whenSuccess { $0.close(promise: nil) }
    }

    private func advance() { current = (current + 1) % endpoints.count }

    /// Connects to the current endpoint; `handlers` adds the handlers after HTTP's, on the loop.
    private func connect(_ handlers: @escaping @Sendable (any Channel) throws -> Void) -> EventLoopFuture<any Channel> {
        guard !isShutDown else { return loop.makeFailedFuture(EtcdError(.unavailable, "the etcd client is shut down")) }
        let endpoint = self.endpoint
        return ClientBootstrap(group: loop)
            .connectTimeout(.seconds(2))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try handlers(channel)
                }
            }
            .connect(host: endpoint.host, port: endpoint.port)
            .flatMapErrorThrowing { error in
                throw EtcdError(.unavailable, "cannot reach etcd at \(endpoint): \(error)")
            }
    }

    static func request(_ path: String, _ body: JSONValue) -> GatewayRequest {
        var bytes: [UInt8] = []
        body.write(to: &bytes)
        return GatewayRequest(path: path, headers: [("Content-Type", "application/json")], body: bytes)
    }
}

extension EtcdError {
    /// Trouble with the member rather than with the request: another member may do better.
    var isMemberTrouble: Bool {
        switch kind {
        case .unavailable, .timedOut: true
        // gRPC's UNAVAILABLE: "etcdserver: no leader", "etcdserver: request timed out", ...
        case .server(let code): code == 14
        case .badAnswer: false
        }
    }
}

/// One POST.
struct GatewayRequest {
    var path: String
    var headers: [(String, String)]
    var body: [UInt8]

    func write(to context: ChannelHandlerContext) {
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: path)
        head.headers.add(name: "Host", value: "etcd")
        head.headers.add(name: "Content-Length", value: "\(body.count)")
        for (name, value) in headers { head.headers.add(name: name, value: value) }
        let bytes = context.channel.allocator.buffer(bytes: body)
        context.write(NIOAny(HTTPClientRequestPart.head(head)), promise: nil)
        context.write(NIOAny(HTTPClientRequestPart.body(.byteBuffer(bytes))), promise: nil)
        context.writeAndFlush(NIOAny(HTTPClientRequestPart.end(nil)), promise: nil)
    }
}

struct GatewayCall {
    var request: GatewayRequest
    var promise: EventLoopPromise<JSONValue>
}

/// Reads one answer body and its status into JSON, or into an ``EtcdError``.
func gatewayAnswer(status: HTTPResponseStatus, body: ByteBuffer) -> Result<JSONValue, EtcdError> {
    let json = try? JSONValue.parse(body.readableBytesView)
    guard status == .ok else {
        let code = json?["code"]?.number.map { Int($0) } ?? -1
        let message = json?["message"]?.string ?? json?["error"]?.string ?? "HTTP \(status.code)"
        return .failure(EtcdError(.server(code: code), "etcd: \(message)"))
    }
    guard let json else { return .failure(EtcdError(.badAnswer, "etcd answered something that is not JSON")) }
    return .success(json)
}

/// Pipelined unary calls: answers come back in the order of the requests.
final class UnaryHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private var context: ChannelHandlerContext?
    private var waiting = Deque<EventLoopPromise<JSONValue>>()
    private var status = HTTPResponseStatus.ok
    private var body = ByteBuffer()

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    /// Sends a call (on the loop); its answer is the next one not yet matched.
    func send(_ call: GatewayCall) {
        guard let context, context.channel.isActive else {
            return call.promise.fail(EtcdError(.unavailable, "the connection to etcd closed"))
        }
        waiting.append(call.promise)
        call.request.write(to: context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = head.status
            body.clear()
        case .body(var part):
            body.writeBuffer(&part)
        case .end:
            guard let promise = waiting.popFirst() else { return context.close(promise: nil) }
            promise.completeWith(gatewayAnswer(status: status, body: body).mapError { $0 as any Error })
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(EtcdError(.unavailable, "the connection to etcd closed"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAll(EtcdError(.unavailable, "the connection to etcd failed: \(error)"))
        context.close(promise: nil)
    }

    private func failAll(_ error: EtcdError) {
        while let promise = waiting.popFirst() { promise.fail(error) }
    }
}

/// A stream's answer: one JSON object per line of a chunked body.
final class StreamHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private let onMessage: (JSONValue) -> Void
    private let ended: EventLoopPromise<Void>
    private var status = HTTPResponseStatus.ok
    private var pending = ByteBuffer()

    init(onMessage: @escaping (JSONValue) -> Void, ended: EventLoopPromise<Void>) {
        self.onMessage = onMessage
        self.ended = ended
    }

    private var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    /// Sends the stream's request (on the loop).
    func send(_ request: GatewayRequest) {
        if let context { request.write(to: context) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = head.status
        case .body(var part):
            pending.writeBuffer(&part)
            guard status == .ok else { return }
            while let newline = pending.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
                let line = pending.readSlice(length: newline - pending.readerIndex + 1)!
                guard let message = try? JSONValue.parse(line.readableBytesView.dropLast()) else {
                    ended.fail(EtcdError(.badAnswer, "etcd sent a stream line that is not JSON"))
                    return context.close(promise: nil)
                }
                onMessage(message)
            }
            pending.discardReadBytes()
        case .end:
            if status != .ok, case .failure(let error) = gatewayAnswer(status: status, body: pending) {
                ended.fail(error)
            } else if pending.readableBytes > 0, let last = try? JSONValue.parse(pending.readableBytesView) {
                // A stream's last message (an error: "no leader") may come without its newline.
                onMessage(last)
            }
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        ended.succeed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        ended.fail(EtcdError(.unavailable, "the etcd stream failed: \(error)"))
        context.close(promise: nil)
    }
}
