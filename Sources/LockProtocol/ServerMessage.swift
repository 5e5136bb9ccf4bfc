public import LockCore

/// A line lockd sent, read back: the answer to a request, or a pushed event.
public enum ServerMessage: Sendable {
    /// The answer to the request with ``Answer/id``.
    case answer(Answer)
    /// A hold the connection made was taken away.
    case revoked(Revocation)
    /// A lock this connection watches changed (the `watch` op).
    case changed(LockChange)

    /// Reads one line (without its newline).
    /// - Throws: `nil` result is never returned; a line that is not protocol v1 throws.
    public init(line: some Collection<UInt8>) throws(ServerMessageError) {
        let json: JSONValue
        do {
            json = try JSONValue.parse(line)
        } catch {
            throw ServerMessageError(description: "a line that is not JSON")
        }
        try self.init(json)
    }

    /// Reads one parsed line.
    public init(_ json: JSONValue) throws(ServerMessageError) {
        guard case .object = json else { throw ServerMessageError(description: "a line that is no JSON object") }
        if let event = json["event"] {
            let lock = json["lock"]?.string.flatMap(LockName.init)
            if event == "revoked", let lock, let reason = json["reason"]?.string.flatMap(RevocationReason.init) {
                self = .revoked(Revocation(lock: lock, owner: json["owner"] ?? .null, reason: reason))
            } else if event == "changed", let lock, let locks = json["locks"]?.elements {
                self = .changed(LockChange(lock: lock, locks: locks))
            } else {
                throw ServerMessageError(description: "an unknown event \(json.serialized)")
            }
            return
        }
        guard let ok = json["ok"]?.bool, let idJSON = json["id"] else {
            throw ServerMessageError(description: "an answer without \"id\" and \"ok\": \(json.serialized)")
        }
        var error: LockError?
        if !ok {
            guard let code = json["error"]?["code"]?.string else {
                throw ServerMessageError(description: "a failure without an error code: \(json.serialized)")
            }
            // A code this client does not know is still a failure; it reads as `invalid` only in
            // ``Answer/error``'s code, and the wire code stays in the message.
            let known = LockError.Code(wire: code)
            let message = json["error"]?["message"]?.string ?? ""
            error = LockError(known ?? .invalid, known == nil ? "\(code): \(message)" : message)
        }
        self = .answer(Answer(id: RequestID(idJSON), error: error, fields: json))
    }
}

/// A line from lockd that is not protocol v1.
public struct ServerMessageError: Error, Sendable, CustomStringConvertible {
    public var description: String
}

/// The `revoked` event.
public struct Revocation: Sendable, Equatable {
    public var lock: LockName
    /// The owner as the event writes it: `{"session": "ID"}`, `{"pid": N}` or `{"token": "T"}`.
    public var owner: JSONValue
    public var reason: RevocationReason
}

/// The `changed` event: a watched lock's state after a change.
public struct LockChange: Sendable, Equatable {
    public var lock: LockName
    /// The lock as `status` lists it (one element), or empty when the lock is now free.
    public var locks: [JSONValue]
}

/// An answer, with typed access to what each operation returns.
public struct Answer: Sendable {
    /// The request's id; `nil` when lockd could not read one (a malformed line, a refusal).
    public var id: RequestID?
    /// Why the request failed; `nil` on success.
    public var error: LockError?
    /// The whole answer as sent.
    public var fields: JSONValue

    /// Whether the request succeeded.
    public var isOK: Bool { error == nil }

    /// The grant of a successful `acquire`.
    public var grant: Grant? {
        guard let lock = fields["lock"]?.string.flatMap(LockName.init),
            let mode = fields["mode"]?.string.flatMap(LockMode.init(rawValue:)), let count = integer("count"),
            let fence = integer("fence"), fence >= 0
        else { return nil }
        return Grant(
            lock: lock, mode: mode, count: Int(count), fence: UInt64(fence),
            expires: fields["expires"]?.string.flatMap(Timestamp.parse))
    }

    /// The count left after a `release`.
    public var count: Int64? { integer("count") }
    /// The shield depth after a `shield`.
    public var depth: Int64? { integer("depth") }
    /// When a renewed lease ends (RFC 3339).
    public var expires: String? { fields["expires"]?.string }
    /// What a `break` did.
    public var broken: (released: Int64, deferred: Int64)? {
        guard let released = integer("released"), let deferred = integer("deferred") else { return nil }
        return (released, deferred)
    }
    /// The `locks` of a `status` answer, as sent.
    public var locks: [JSONValue]? {
        guard case .array(let locks)? = fields["locks"] else { return nil }
        return locks
    }

    /// A member that is an integer.
    public func integer(_ key: String) -> Int64? {
        guard case .int(let value)? = fields[key] else { return nil }
        return value
    }
}
