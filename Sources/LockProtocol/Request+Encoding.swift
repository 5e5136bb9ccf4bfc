import LockCore

extension Request {
    /// The request as the JSON object a client sends; ``Request/decode(_:)`` reads it back.
    public var json: JSONValue {
        var members: [(key: String, value: JSONValue)] = [("id", id.json)]
        switch operation {
        case .hello: members.append(("op", "hello"))
        case .ping: members.append(("op", "ping"))
        case .acquire(let lock, let mode, let wait, let owner):
            members += [("op", "acquire"), ("lock", .string(lock.rawValue)), ("mode", .string(mode.rawValue))]
            if let wait { members.append(("wait", .double(wait))) }
            members.append(("owner", owner.json))
        case .release(let lock, let owner, let all):
            members += [
                ("op", "release"), ("lock", .string(lock.rawValue)), ("owner", owner.json), ("all", .bool(all)),
            ]
        case .renew(let token, let ttl):
            members += [("op", "renew"), ("token", .string(token)), ("ttl", .double(ttl))]
        case .shield(let lock, let owner, let on):
            members += [("op", "shield"), ("lock", .string(lock.rawValue)), ("owner", owner.json), ("on", .bool(on))]
        case .breakLock(let lock):
            members += [("op", "break"), ("lock", .string(lock.rawValue))]
        case .status(let lock):
            members.append(("op", "status"))
            if let lock { members.append(("lock", .string(lock.rawValue))) }
        case .cancel(let request):
            members += [("op", "cancel"), ("request", request.json)]
        case .metrics: members.append(("op", "metrics"))
        case .watch(let lock):
            members.append(("op", "watch"))
            if let lock { members.append(("lock", .string(lock.rawValue))) }
        }
        return .object(members)
    }
}
