import LockCore
import LockProtocol

/// The records of the state journal: what lockd knows about a lock's pid and token holds, and
/// how far fences may have gone.
enum StateRecords {
    /// A pid owner's hold as read back, with the start time of the process it belonged to.
    struct RestoredHold {
        var hold: DurableHold
        var startTime: UInt64?
    }

    /// `{"fence": N}`: fences up to N may have been handed out.
    static func fence(_ fence: UInt64) -> JSONValue {
        .object([("fence", .int(Int64(fence)))])
    }

    /// `{"lock": NAME, "holds": [...]}`: the whole durable state of one lock (no holds: none).
    static func lock(_ name: LockName, holds: [DurableHold], startTime: (Int32) -> UInt64?) -> JSONValue {
        .object([("lock", .string(name.rawValue)), ("holds", .array(holds.map { encode($0, startTime: startTime) }))])
    }

    private static func encode(_ hold: DurableHold, startTime: (Int32) -> UInt64?) -> JSONValue {
        var owner: [(key: String, value: JSONValue)]
        switch hold.owner {
        case .pid(let pid):
            owner = [("pid", .int(Int64(pid)))]
            if let start = startTime(pid) { owner.append(("start", .int(Int64(start)))) }
        case .token(let token):
            owner = [("token", .string(token))]
        case .session(let id):
            owner = [("session", .int(Int64(id.rawValue)))]
        }
        var fields: [(key: String, value: JSONValue)] = [
            ("owner", .object(owner)), ("mode", .string(hold.mode.rawValue)), ("count", .int(Int64(hold.count))),
            ("fence", .int(Int64(hold.fence))), ("since", .double(hold.since)),
            ("shield", .int(Int64(hold.shieldDepth))),
            ("revoke", hold.pendingRevocation.map { .string($0.rawValue) } ?? .null),
            ("pid", .int(Int64(hold.creator.pid))), ("uid", .int(Int64(hold.creator.uid))),
            ("gid", .int(Int64(hold.creator.gid))),
        ]
        if let lease = hold.lease {
            fields.append(
                (
                    "lease",
                    .object([
                        ("ttl", .double(lease.ttl)), ("expires", lease.expiresAt.map { .double($0) } ?? .null),
                        ("uid", .int(Int64(lease.uid))),
                    ])
                ))
        }
        return .object(fields)
    }

    /// The holds of a lock record; a malformed record or hold is skipped rather than trusted.
    static func holds(of record: JSONValue) -> [RestoredHold] {
        guard let name = record["lock"]?.string.flatMap(LockName.init), case .array(let holds)? = record["holds"] else {
            return []
        }
        return holds.compactMap { decode($0, lock: name) }
    }

    private static func decode(_ json: JSONValue, lock: LockName) -> RestoredHold? {
        guard let ownerJSON = json["owner"], let mode = json["mode"]?.string.flatMap(LockMode.init(rawValue:)),
            let count = integer(json["count"]), count > 0, let fence = integer(json["fence"]),
            let since = json["since"]?.number, let shield = integer(json["shield"]),
            let pid = integer(json["pid"]), let uid = integer(json["uid"]), let gid = integer(json["gid"])
        else { return nil }
        let owner: LockOwner
        var startTime: UInt64?
        if let ownerPID = integer(ownerJSON["pid"]) {
            owner = .pid(Int32(truncatingIfNeeded: ownerPID))
            startTime = integer(ownerJSON["start"]).map { UInt64($0) }
        } else if let token = ownerJSON["token"]?.string {
            owner = .token(token)
        } else {
            return nil
        }
        var lease: DurableLease?
        if let leaseJSON = json["lease"], let ttl = leaseJSON["ttl"]?.number, let leaseUID = integer(leaseJSON["uid"]) {
            lease = DurableLease(
                ttl: ttl, expiresAt: leaseJSON["expires"]?.number, uid: UInt32(truncatingIfNeeded: leaseUID))
        }
        let hold = DurableHold(
            lock: lock, owner: owner, mode: mode, count: Int(count), fence: UInt64(fence), since: since,
            shieldDepth: Int(shield),
            pendingRevocation: json["revoke"]?.string.flatMap(RevocationReason.init(rawValue:)),
            creator: ClientIdentity(
                pid: Int32(truncatingIfNeeded: pid), uid: UInt32(truncatingIfNeeded: uid),
                gid: UInt32(truncatingIfNeeded: gid)),
            lease: lease)
        return RestoredHold(hold: hold, startTime: startTime)
    }

    private static func integer(_ json: JSONValue?) -> Int64? {
        guard case .int(let value)? = json, value >= 0 else { return nil }
        return value
    }
}
