public import LockCore

/// A request's `id`: a number or a string, echoed in its response.
public enum RequestID: Hashable, Sendable, CustomStringConvertible {
    case int(Int64)
    case double(Double)
    case string(String)

    /// Reads an id from JSON; `nil` for anything but a number or a string.
    public init?(_ json: JSONValue) {
        switch json {
        case .int(let value): self = .int(value)
        case .double(let value): self = .double(value)
        case .string(let value): self = .string(value)
        default: return nil
        }
    }

    /// The id as JSON.
    public var json: JSONValue {
        switch self {
        case .int(let value): .int(value)
        case .double(let value): .double(value)
        case .string(let value): .string(value)
        }
    }

    /// The id's JSON text, which also serves as the engine's request tag.
    public var description: String {
        if case .int(let value) = self { return String(value) }
        return json.serialized
    }
}

/// Whom a request names as the owner.
public enum OwnerSpec: Hashable, Sendable {
    /// The connection itself.
    case session
    /// A process.
    case pid(Int32)
    /// A token lease; `ttl` is needed to acquire (unless lockd is configured with a default) and ignored elsewhere.
    case token(String, ttl: Double?)
}

/// One operation of protocol v1.
public enum Operation: Hashable, Sendable {
    case hello
    case ping
    case acquire(lock: LockName, mode: LockMode, wait: Double?, owner: OwnerSpec)
    case release(lock: LockName, owner: OwnerSpec, all: Bool)
    case renew(token: String, ttl: Double)
    case shield(lock: LockName, owner: OwnerSpec, on: Bool)
    case breakLock(lock: LockName)
    case status(lock: LockName?)
    case cancel(request: RequestID)
}

/// A validated request line.
public struct Request: Hashable, Sendable {
    /// The id to echo.
    public var id: RequestID
    /// What to do.
    public var operation: Operation

    /// Creates a request.
    public init(id: RequestID, operation: Operation) {
        self.id = id
        self.operation = operation
    }
}

/// A line that could not be read as a request: the id to answer with (when readable) and why.
public struct RequestDecodingError: Error, Sendable {
    /// The request's id when it had a readable one.
    public var id: RequestID?
    /// Always an `invalid` error naming the problem.
    public var error: LockError
}

extension Request {
    /// Reads and validates one request line (without its newline).
    public static func decode(_ line: some Collection<UInt8>) throws(RequestDecodingError) -> Request {
        let json: JSONValue
        do {
            json = try JSONValue.parse(line)
        } catch {
            throw RequestDecodingError(id: nil, error: .invalid("the line is not valid JSON"))
        }
        guard case .object = json else {
            throw RequestDecodingError(id: nil, error: .invalid("a request must be a JSON object"))
        }
        guard let rawID = json["id"], let id = RequestID(rawID) else {
            throw RequestDecodingError(id: nil, error: .invalid("a request needs an \"id\" (number or string)"))
        }
        do {
            return Request(id: id, operation: try decodeOperation(json))
        } catch {
            throw RequestDecodingError(id: id, error: error)
        }
    }

    private static func decodeOperation(_ json: JSONValue) throws(LockError) -> Operation {
        guard let op = json["op"]?.string else { throw .invalid("a request needs an \"op\" string") }
        switch op {
        case "hello": return .hello
        case "ping": return .ping
        case "acquire":
            // A token without "ttl" is the daemon's to judge: its configuration may give a default.
            let owner = try ownerSpec(json["owner"])
            return .acquire(
                lock: try lockName(json["lock"]), mode: try mode(json["mode"]),
                wait: try seconds(json["wait"], field: "wait", allowZero: true), owner: owner)
        case "release":
            return .release(
                lock: try lockName(json["lock"]), owner: try ownerSpec(json["owner"]),
                all: try flag(json["all"], field: "all") ?? false)
        case "renew":
            guard let token = json["token"]?.string, isValidToken(token) else {
                throw .invalid("\"token\" must be a string of 1-255 printable characters")
            }
            guard let ttl = try seconds(json["ttl"], field: "ttl", allowZero: false) else {
                throw .invalid("\"ttl\" (seconds, > 0) is required")
            }
            return .renew(token: token, ttl: ttl)
        case "shield":
            guard let on = try flag(json["on"], field: "on") else {
                throw .invalid("\"on\" (true or false) is required")
            }
            return .shield(lock: try lockName(json["lock"]), owner: try ownerSpec(json["owner"]), on: on)
        case "break":
            return .breakLock(lock: try lockName(json["lock"]))
        case "status":
            if json["lock"] == nil || json["lock"] == .null { return .status(lock: nil) }
            return .status(lock: try lockName(json["lock"]))
        case "cancel":
            guard let raw = json["request"], let request = RequestID(raw) else {
                throw .invalid("\"request\" must be the id of a pending acquire")
            }
            return .cancel(request: request)
        default:
            throw .invalid("unknown op \"\(op)\"")
        }
    }

    private static func lockName(_ json: JSONValue?) throws(LockError) -> LockName {
        guard let raw = json?.string else { throw .invalid("\"lock\" (a lock name) is required") }
        guard let name = LockName(raw) else {
            throw .invalid("invalid lock name: use 1-255 bytes of A-Z a-z 0-9 . _ : / @ + -")
        }
        return name
    }

    private static func mode(_ json: JSONValue?) throws(LockError) -> LockMode {
        guard let json, json != .null else { return .exclusive }
        guard let raw = json.string, let mode = LockMode(rawValue: raw) else {
            throw .invalid("\"mode\" must be \"exclusive\" or \"shared\"")
        }
        return mode
    }

    private static func flag(_ json: JSONValue?, field: String) throws(LockError) -> Bool? {
        guard let json, json != .null else { return nil }
        guard let value = json.bool else { throw .invalid("\"\(field)\" must be true or false") }
        return value
    }

    private static func seconds(_ json: JSONValue?, field: String, allowZero: Bool) throws(LockError) -> Double? {
        guard let json, json != .null else { return nil }
        guard let value = json.number, value.isFinite, allowZero ? value >= 0 : value > 0 else {
            throw .invalid("\"\(field)\" must be a number of seconds \(allowZero ? ">= 0" : "> 0")")
        }
        return value
    }

    private static func ownerSpec(_ json: JSONValue?) throws(LockError) -> OwnerSpec {
        guard let json, json != .null, json != .string("session") else { return .session }
        if let pidValue = json["pid"] {
            guard case .int(let pid) = pidValue, pid > 0, pid <= Int64(Int32.max) else {
                throw .invalid("\"owner.pid\" must be a positive process id")
            }
            return .pid(Int32(pid))
        }
        if let tokenValue = json["token"] {
            guard let token = tokenValue.string, isValidToken(token) else {
                throw .invalid("\"owner.token\" must be a string of 1-255 printable characters")
            }
            return .token(token, ttl: try seconds(json["ttl"], field: "owner.ttl", allowZero: false))
        }
        throw .invalid("\"owner\" must be \"session\", {\"pid\": N} or {\"token\": \"T\", \"ttl\": S}")
    }

    static func isValidToken(_ token: String) -> Bool {
        let utf8 = token.utf8
        return (1...255).contains(utf8.count) && utf8.allSatisfy { $0 >= 0x20 && $0 != 0x7f }
    }
}

extension OwnerSpec {
    /// The owner as JSON, as requests write it.
    public var json: JSONValue {
        switch self {
        case .session: "session"
        case .pid(let pid): .object([("pid", .int(Int64(pid)))])
        case .token(let token, let ttl):
            .object([("token", .string(token))] + (ttl.map { [("ttl", JSONValue.double($0))] } ?? []))
        }
    }
}
