/// Identifies one client connection for the daemon's lifetime.
public struct SessionID: Hashable, Sendable, CustomStringConvertible {
    /// The connection's number, unique within one daemon run.
    public let rawValue: UInt64

    /// Wraps a connection number.
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }

    public var description: String { String(rawValue) }
}

/// Who a hold belongs to, which decides how long it lives.
public enum LockOwner: Hashable, Sendable, CustomStringConvertible {
    /// The connection that asked: its holds go when it closes.
    case session(SessionID)
    /// A process: its holds go when it exits.
    case pid(Int32)
    /// A named lease: its holds expire together unless renewed.
    case token(String)

    /// A token inside quotes with `"` and `\` escaped, so that it cannot end the quotes and add
    /// a field to a log line (tokens have no control characters).
    private static func escaped(_ token: String) -> String {
        guard token.contains(where: { $0 == "\"" || $0 == "\\" }) else { return token }
        var out = ""
        for character in token {
            if character == "\"" || character == "\\" { out.append("\\") }
            out.append(character)
        }
        return out
    }

    /// Whether holds of this owner outlive a connection, and so lockd's own restart.
    public var isDurable: Bool {
        if case .session = self { return false }
        return true
    }

    public var description: String {
        switch self {
        case .session(let id): "session \(id)"
        case .pid(let pid): "pid \(pid)"
        case .token(let token): "token \"\(Self.escaped(token))\""
        }
    }
}

/// The peer credentials of a connection (SO_PEERCRED): who really asked.
public struct ClientIdentity: Hashable, Sendable {
    /// Process id of the peer when it connected.
    public var pid: Int32
    /// Effective user id of the peer.
    public var uid: UInt32
    /// Effective group id of the peer.
    public var gid: UInt32

    /// Creates an identity from peer credentials.
    public init(pid: Int32, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }

    /// Whether this identity is the superuser.
    public var isRoot: Bool { uid == 0 }
}

/// One request of one connection, as the engine tracks pending acquires.
public struct RequestKey: Hashable, Sendable {
    /// The connection that sent the request.
    public var session: SessionID
    /// The request's id, in a canonical text form chosen by the protocol layer.
    public var tag: String

    /// Creates a key.
    public init(session: SessionID, tag: String) {
        self.session = session
        self.tag = tag
    }
}

/// Who sent a request: the connection and its peer credentials.
public struct Requester: Hashable, Sendable {
    /// The connection.
    public var session: SessionID
    /// The peer credentials of that connection.
    public var identity: ClientIdentity

    /// Creates a requester.
    public init(session: SessionID, identity: ClientIdentity) {
        self.session = session
        self.identity = identity
    }
}
