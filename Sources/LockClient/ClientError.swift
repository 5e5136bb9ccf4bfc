public import LockCore

/// Why a client call failed before the daemon could answer it.
public struct ClientError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure.
    public enum Kind: Sendable, Hashable {
        /// Nothing answers at the socket path (missing, refused, or no permission to connect).
        case unreachable
        /// Connecting was refused by file permissions.
        case permissionDenied
        /// The connection closed or broke mid-conversation.
        case connectionLost
        /// The daemon sent something that is not protocol v1.
        case badResponse
        /// No answer within the allowed time.
        case timedOut
        /// lockd turned the connection away with one error line (too many clients, stopping);
        /// ``ClientError/code`` tells which.
        case refused
    }

    /// The kind of failure.
    public var kind: Kind
    /// One line naming the cause.
    public var message: String
    /// lockd's error code when it refused the connection.
    public var code: LockError.Code?

    /// Creates an error.
    public init(_ kind: Kind, _ message: String, code: LockError.Code? = nil) {
        self.kind = kind
        self.message = message
        self.code = code
    }

    public var description: String { message }
}
