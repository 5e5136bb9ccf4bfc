public import LockCore

/// Builds the JSON lines the daemon sends.
public enum Response {
    /// A success: `{"id": ..., "ok": true, ...fields}`.
    public static func ok(_ id: RequestID, _ fields: [(key: String, value: JSONValue)] = []) -> JSONValue {
        var members: [(key: String, value: JSONValue)] = []
        members.reserveCapacity(2 + fields.count)
        members.append(("id", id.json))
        members.append(("ok", true))
        members += fields
        return .object(members)
    }

    /// A failure: `{"id": ..., "ok": false, "error": {"code": ..., "message": ...}}`.
    public static func error(_ id: RequestID?, _ error: LockError) -> JSONValue {
        .object([
            ("id", id?.json ?? .null), ("ok", false),
            ("error", .object([("code", .string(error.code.description)), ("message", .string(error.message))])),
        ])
    }

    /// The fields of a grant.
    public static func grant(_ grant: Grant) -> [(key: String, value: JSONValue)] {
        var fields: [(key: String, value: JSONValue)] = [
            ("lock", .string(grant.lock.rawValue)), ("mode", .string(grant.mode.rawValue)),
            ("count", .int(Int64(grant.count))), ("fence", .int(Int64(grant.fence))),
        ]
        if let expires = grant.expires { fields.append(("expires", .string(Timestamp.format(expires)))) }
        return fields
    }

    /// The pushed event telling a connection that a hold it made was taken away.
    public static func revoked(lock: LockName, owner: LockOwner, reason: RevocationReason) -> JSONValue {
        .object([
            ("event", "revoked"), ("lock", .string(lock.rawValue)), ("owner", ownerJSON(owner)),
            ("reason", .string(reason.rawValue)),
        ])
    }

    /// The pushed event telling a watching connection that `lock` changed; `locks` is what
    /// `status` would now list for it (empty when it is free).
    public static func changed(lock: LockName, locks: JSONValue) -> JSONValue {
        .object([("event", "changed"), ("lock", .string(lock.rawValue)), ("locks", locks)])
    }

    /// An owner as answers write it: `{"session": "ID"}`, `{"pid": N}` or `{"token": "T"}`.
    public static func ownerJSON(_ owner: LockOwner) -> JSONValue {
        switch owner {
        case .session(let id): .object([("session", .string(id.description))])
        case .pid(let pid): .object([("pid", .int(Int64(pid)))])
        case .token(let token): .object([("token", .string(token))])
        }
    }

    /// The `locks` array of a status answer; `commandLine` looks up a pid's command line.
    public static func locks(_ locks: [LockStatus], commandLine: (Int32) -> String?) -> JSONValue {
        func identity(_ owner: LockOwner, pid: Int32, uid: UInt32) -> [(key: String, value: JSONValue)] {
            [
                ("owner", ownerJSON(owner)), ("pid", .int(Int64(pid))), ("uid", .int(Int64(uid))),
                ("cmdline", commandLine(pid).map(JSONValue.string) ?? .null),
            ]
        }
        func holder(_ holder: LockStatus.Holder) -> JSONValue {
            .object(
                identity(holder.owner, pid: holder.pid, uid: holder.uid) + [
                    ("mode", .string(holder.mode.rawValue)), ("count", .int(Int64(holder.count))),
                    ("fence", .int(Int64(holder.fence))), ("since", .string(Timestamp.format(holder.since))),
                    ("shielded", .int(Int64(holder.shielded))),
                    ("expires", holder.expires.map { .string(Timestamp.format($0)) } ?? .null),
                    ("deferred", holder.deferred.map { .string($0.rawValue) } ?? .null),
                ])
        }
        func waiter(_ waiter: LockStatus.Waiter) -> JSONValue {
            .object(
                identity(waiter.owner, pid: waiter.pid, uid: waiter.uid) + [
                    ("mode", .string(waiter.mode.rawValue)), ("since", .string(Timestamp.format(waiter.since))),
                ])
        }
        return .array(
            locks.map { lock in
                .object([
                    ("name", .string(lock.name.rawValue)), ("mode", .string(lock.mode.rawValue)),
                    ("fence", .int(Int64(lock.fence))), ("holders", .array(lock.holders.map(holder))),
                    ("waiters", .array(lock.waiters.map(waiter))),
                ])
            })
    }
}
