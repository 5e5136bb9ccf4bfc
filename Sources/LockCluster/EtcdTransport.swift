import LockProtocol
import NIOCore

/// What the cluster layer needs from a connection to etcd: unary calls and streams, each a JSON
/// body to one of etcd's v3 endpoints (`/v3/kv/txn`, `/v3/watch`, ...). ``GatewayTransport`` speaks
/// etcd's JSON gateway over HTTP/1.1; a gRPC or TLS transport can take its place.
///
/// Every future completes, and every message arrives, on the transport's event loop.
public protocol EtcdTransport: AnyObject {
    /// The loop that runs the transport and its callbacks.
    var loop: any EventLoop { get }

    /// Sends one request and returns its answer (etcd's error answers fail the future with
    /// ``EtcdError``).
    func call(_ path: String, _ body: JSONValue, timeout: TimeAmount) -> EventLoopFuture<JSONValue>

    /// Opens a stream: each message goes to `onMessage` until the stream ends; the returned
    /// future completes when it has ended, for any reason (an error, the server, ``EtcdStream/close()``).
    func stream(
        _ path: String, _ body: JSONValue, headers: [(String, String)],
        onMessage: @escaping (JSONValue) -> Void
    ) -> EtcdStream

    /// Closes every connection.
    func shutdown()
}

/// An open stream of a transport (a watch).
public final class EtcdStream {
    /// Completes when the stream has ended.
    public let ended: EventLoopFuture<Void>
    private let closer: () -> Void

    init(ended: EventLoopFuture<Void>, close: @escaping () -> Void) {
        self.ended = ended
        self.closer = close
    }

    /// Ends the stream (on the transport's loop).
    public func close() { closer() }
}

/// A failure talking to etcd.
public struct EtcdError: Error, CustomStringConvertible {
    /// What kind of failure.
    public enum Kind: Sendable {
        /// No member could be reached, or the connection broke.
        case unavailable
        /// No answer within the call's timeout.
        case timedOut
        /// etcd answered with an error (its gRPC code and message).
        case server(code: Int)
        /// The answer was not what the API promises.
        case badAnswer
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
