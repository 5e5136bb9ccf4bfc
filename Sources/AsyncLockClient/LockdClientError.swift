public import LockClient
public import LockCore

/// Why a ``LockdClient`` call failed.
public enum LockdClientError: Error, Sendable, CustomStringConvertible {
    /// lockd answered with an error: `LockError.code` says which (`busy`, `timeout`,
    /// `deadlock`, `denied`, …; docs/protocol.md lists them).
    case lockd(LockError)
    /// lockd could not be reached, or the connection broke before the answer.
    case connection(ClientError)
    /// The hold was taken away while the body ran; the body was cancelled (unless shielded, see
    /// ``LockdClient/withLock(_:mode:wait:owner:shielded:isolation:_:)``).
    case holdLost(lock: String, reason: HoldLoss)

    /// lockd's error code, when lockd answered with one.
    public var code: LockError.Code? {
        if case .lockd(let error) = self { return error.code }
        if case .connection(let error) = self { return error.code }
        return nil
    }

    public var description: String {
        switch self {
        case .lockd(let error): error.description
        case .connection(let error): error.description
        case .holdLost(let lock, let reason): "the hold on \(lock) was lost: \(reason)"
        }
    }
}

/// How a hold ended before its body did.
public enum HoldLoss: Sendable, Hashable, CustomStringConvertible {
    /// lockd revoked it (`break`, `expired`, `lost`), with its `revoked` event's reason.
    case revoked(RevocationReason)
    /// The connection that owned a session hold closed, so lockd released the hold.
    case connectionLost

    public var description: String {
        switch self {
        case .revoked(let reason): reason.rawValue
        case .connectionLost: "connection lost"
        }
    }
}
