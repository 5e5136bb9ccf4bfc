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
    /// Answers like `status`, then sends a `changed` event whenever a lock (or only `lock`)
    /// changes, until the connection closes.
    case watch(lock: LockName?)
    /// lockd's metrics in Prometheus' text format.
    case metrics
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
        let fields: RequestFields
        do {
            fields = try RequestFields(line)
        } catch {
            throw RequestDecodingError(id: nil, error: error)
        }
        guard let rawID = fields.id, let id = RequestID(rawID) else {
            throw RequestDecodingError(id: nil, error: .invalid("a request needs an \"id\" (number or string)"))
        }
        do {
            return Request(id: id, operation: try decodeOperation(fields))
        } catch {
            throw RequestDecodingError(id: id, error: error)
        }
    }

    private static func decodeOperation(_ fields: RequestFields) throws(LockError) -> Operation {
        guard let op = fields.op?.string else { throw .invalid("a request needs an \"op\" string") }
        switch op {
        case "hello": return .hello
        case "ping": return .ping
        case "acquire":
            // A token without "ttl" is the daemon's to judge: its configuration may give a default.
            let owner = try ownerSpec(fields.owner)
            return .acquire(
                lock: try lockName(fields.lock), mode: try mode(fields.mode),
                wait: try seconds(fields.wait, field: "wait", allowZero: true), owner: owner)
        case "release":
            return .release(
                lock: try lockName(fields.lock), owner: try ownerSpec(fields.owner),
                all: try flag(fields.all, field: "all") ?? false)
        case "renew":
            guard let token = fields.token?.string, isValidToken(token) else {
                throw .invalid("\"token\" must be a string of 1-255 printable characters")
            }
            guard let ttl = try seconds(fields.ttl, field: "ttl", allowZero: false) else {
                throw .invalid("\"ttl\" (seconds, > 0) is required")
            }
            return .renew(token: token, ttl: ttl)
        case "shield":
            guard let on = try flag(fields.on, field: "on") else {
                throw .invalid("\"on\" (true or false) is required")
            }
            return .shield(lock: try lockName(fields.lock), owner: try ownerSpec(fields.owner), on: on)
        case "break":
            return .breakLock(lock: try lockName(fields.lock))
        case "status":
            if fields.lock == nil || fields.lock == .null { return .status(lock: nil) }
            return .status(lock: try lockName(fields.lock))
        case "metrics":
            return .metrics
        case "watch":
            if fields.lock == nil || fields.lock == .null { return .watch(lock: nil) }
            return .watch(lock: try lockName(fields.lock))
        case "cancel":
            guard let raw = fields.request, let request = RequestID(raw) else {
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

    /// Whether `token` is a valid token name: 1-255 bytes with no control characters.
    public static func isValidToken(_ token: String) -> Bool {
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

/// The members of a request line that the protocol reads, taken straight from the bytes: no
/// object is built and no member is looked up by a scan (docs/performance.md). Other members
/// are ignored, but, as everywhere, none may appear twice.
struct RequestFields {
    var id: JSONValue?
    var op: JSONValue?
    var lock: JSONValue?
    var mode: JSONValue?
    var wait: JSONValue?
    var owner: JSONValue?
    var all: JSONValue?
    var on: JSONValue?
    var token: JSONValue?
    var ttl: JSONValue?
    var request: JSONValue?
    /// Names of the other members (a set: a hostile line may send thousands).
    private var others: Set<String> = []

    init(_ line: some Collection<UInt8>) throws(LockError) {
        let read = { (buffer: UnsafeBufferPointer<UInt8>) -> Result<RequestFields, JSONParseError> in
            Result { () throws(JSONParseError) -> RequestFields in
                var fields = RequestFields()
                try JSONParser.parseMembers(buffer) { key, value throws(JSONParseError) in try fields.add(key, value) }
                return fields
            }
        }
        let result = line.withContiguousStorageIfAvailable(read) ?? Array(line).withUnsafeBufferPointer(read)
        switch result {
        case .success(let fields):
            self = fields
        case .failure(.duplicateMember(let key)):
            throw .invalid("member \"\(key)\" appears twice")
        case .failure:
            // Not JSON at all, or JSON that is no object: tell which.
            if (try? JSONValue.parse(line)) != nil { throw .invalid("a request must be a JSON object") }
            throw .invalid("the line is not valid JSON")
        }
    }

    private init() {}

    private mutating func add(_ key: String, _ value: JSONValue) throws(JSONParseError) {
        func set(_ field: inout JSONValue?) throws(JSONParseError) {
            guard field == nil else { throw .duplicateMember(key) }
            field = value
        }
        switch key {
        case "id": try set(&id)
        case "op": try set(&op)
        case "lock": try set(&lock)
        case "mode": try set(&mode)
        case "wait": try set(&wait)
        case "owner": try set(&owner)
        case "all": try set(&all)
        case "on": try set(&on)
        case "token": try set(&token)
        case "ttl": try set(&ttl)
        case "request": try set(&request)
        default:
            guard others.insert(key).inserted else { throw .duplicateMember(key) }
        }
    }
}
