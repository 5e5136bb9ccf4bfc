import Glibc
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// Where the opt-in metrics listener listens (`[metrics] listen`): a Unix socket, or a loopback
/// address; never beyond the host, since the figures name locks.
enum MetricsAddress: Equatable, Sendable, CustomStringConvertible {
    case unix(path: String)
    case loopback(host: String, port: Int)

    /// `/path`, `unix:/path`, or `HOST:PORT` with a loopback HOST (`127.0.0.1`, `localhost`,
    /// `[::1]`); `nil` when `text` is none of these.
    init?(_ text: String) {
        if text.hasPrefix("/") || text.hasPrefix("unix:/") {
            self = .unix(path: text.hasPrefix("unix:") ? String(text.dropFirst(5)) : text)
            return
        }
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (1...65535).contains(port)
        else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard host == "localhost" || host == "::1" || host.hasPrefix("127.") else { return nil }
        self = .loopback(host: host, port: port)
    }

    var description: String {
        switch self {
        case .unix(let path): path
        case .loopback(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        }
    }
}

/// The metrics listener: HTTP/1.1 on swift-nio, `GET /metrics` answers the exposition of the
/// service's ``LockdMetrics``. It runs on the service's one event loop.
enum MetricsEndpoint {
    static func bind(
        _ address: MetricsAddress, group: any EventLoopGroup, service: NIOLoopBound<LockService>
    ) async throws -> any Channel {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(MetricsHTTPHandler(service: service))
                }
            }
        switch address {
        case .unix(let path):
            _ = try SocketPreparation.prepare(path: path)
            let channel = try await bootstrap.bind(unixDomainSocketPath: path).get()
            // Whoever may reach lockd's own socket may read its metrics; the directory decides.
            chmod(path, 0o666)
            return channel
        case .loopback(let host, let port):
            return try await bootstrap.bind(host: host, port: port).get()
        }
    }
}

/// Answers each request on one HTTP connection.
private final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let service: NIOLoopBound<LockService>
    private var head: HTTPRequestHead?

    init(service: NIOLoopBound<LockService>) { self.service = service }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): self.head = head
        case .body: break
        case .end:
            guard let head else { return }
            self.head = nil
            respond(to: head, context: context)
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        let status: HTTPResponseStatus
        let body: String
        var headers = HTTPHeaders()
        switch (head.method, path) {
        case (.GET, "/metrics"), (.HEAD, "/metrics"):
            status = .ok
            body = service.value.metricsText()
            headers.add(name: "Content-Type", value: "text/plain; version=0.0.4; charset=utf-8")
        case (.GET, _), (.HEAD, _):
            status = .notFound
            body = "lockd serves /metrics only\n"
        default:
            status = .methodNotAllowed
            body = "GET /metrics\n"
            headers.add(name: "Allow", value: "GET, HEAD")
        }
        let buffer = context.channel.allocator.buffer(string: body)
        headers.add(name: "Content-Length", value: "\(buffer.readableBytes)")
        let keepAlive = head.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))),
            promise: nil)
        if head.method != .HEAD { context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil) }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
