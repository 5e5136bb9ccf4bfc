/// A request the engine refused, with a stable code for the wire and a sentence for people.
public struct LockError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The stable, machine-readable reason.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String, Hashable, Sendable {
            case invalid, busy, timeout, deadlock, cancelled, notHeld = "not_held", denied
            case tooLarge = "too_large", shuttingDown = "shutting_down", limit
        }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// Bad JSON, a bad field or an unknown op.
        public static let invalid = Code(.invalid)
        /// The lock is held and the request asked not to wait.
        public static let busy = Code(.busy)
        /// The wait ran out.
        public static let timeout = Code(.timeout)
        /// Waiting would close a cycle in the wait-for graph.
        public static let deadlock = Code(.deadlock)
        /// The wait was cancelled (by the client, or because its owner went away).
        public static let cancelled = Code(.cancelled)
        /// The owner holds nothing that the request is about.
        public static let notHeld = Code(.notHeld)
        /// The peer may not do this.
        public static let denied = Code(.denied)
        /// A request line over the size limit.
        public static let tooLarge = Code(.tooLarge)
        /// A configured limit of the daemon was reached (e.g. its number of connections).
        public static let limit = Code(.limit)
        /// The daemon is stopping.
        public static let shuttingDown = Code(.shuttingDown)

        /// The wire form, e.g. `not_held`.
        public var description: String { value.rawValue }

        /// The code of a wire form, `nil` for one this version does not know.
        public init?(wire: String) {
            guard let value = Value(rawValue: wire) else { return nil }
            self.value = value
        }
    }

    /// Why the request was refused.
    public var code: Code
    /// One sentence naming the lock and the cause.
    public var message: String

    /// Creates an error.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }

    /// See ``Code/invalid``.
    public static func invalid(_ message: String) -> LockError { LockError(.invalid, message) }
    /// See ``Code/notHeld``.
    public static func notHeld(_ message: String) -> LockError { LockError(.notHeld, message) }
    /// See ``Code/denied``.
    public static func denied(_ message: String) -> LockError { LockError(.denied, message) }
    /// See ``Code/shuttingDown``.
    public static func shuttingDown(_ message: String = "lockd is shutting down") -> LockError {
        LockError(.shuttingDown, message)
    }
}
