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

    /// The holds of a lock record, and how many of its holds could not be used. A malformed
    /// record or hold, or one whose numbers lockd could not honour, is skipped rather than trusted.
    static func holds(of record: JSONValue) -> (holds: [RestoredHold], unusable: Int) {
        guard let name = record["lock"]?.string.flatMap(LockName.init), case .array(let holds)? = record["holds"] else {
            return ([], 1)
        }
        let usable = holds.compactMap { decode($0, lock: name) }
        return (usable, holds.count - usable.count)
    }

    private static func decode(_ json: JSONValue, lock: LockName) -> RestoredHold? {
        let counts = 0...Int64(LockTable.maximumCount)
        guard let ownerJSON = json["owner"], let mode = json["mode"]?.string.flatMap(LockMode.init(rawValue:)),
            let count = integer(json["count"], in: counts), count > 0,
            let fence = integer(json["fence"], in: 1...Int64(LockTable.maximumFence)),
            let since = json["since"]?.number, since.isFinite, let shield = integer(json["shield"], in: counts),
            let pid = integer(json["pid"], in: 0...Int64(Int32.max)),
            let uid = integer(json["uid"], in: 0...Int64(UInt32.max)),
            let gid = integer(json["gid"], in: 0...Int64(UInt32.max))
        else { return nil }
        let owner: LockOwner
        var startTime: UInt64?
        if let ownerPID = integer(ownerJSON["pid"], in: 1...Int64(Int32.max)) {
            owner = .pid(Int32(ownerPID))
            startTime = integer(ownerJSON["start"], in: 0...Int64.max).map { UInt64($0) }
        } else if let token = ownerJSON["token"]?.string, Request.isValidToken(token) {
            owner = .token(token)
        } else {
            return nil
        }
        var lease: DurableLease?
        if let leaseJSON = json["lease"] {
            // A lease that cannot be read would leave a token hold that never expires: drop it.
            guard let ttl = leaseJSON["ttl"]?.number, ttl > 0, ttl.isFinite,
                let leaseUID = integer(leaseJSON["uid"], in: 0...Int64(UInt32.max))
            else { return nil }
            let expires = leaseJSON["expires"]
            guard expires == nil || expires == .null || expires?.number?.isFinite == true else { return nil }
            lease = DurableLease(ttl: Seconds.clamped(ttl), expiresAt: expires?.number, uid: UInt32(leaseUID))
        } else if case .token = owner {
            return nil
        }
        let hold = DurableHold(
            lock: lock, owner: owner, mode: mode, count: Int(count), fence: UInt64(fence), since: since,
            shieldDepth: Int(shield),
            pendingRevocation: json["revoke"]?.string.flatMap(RevocationReason.init(rawValue:)),
            creator: ClientIdentity(pid: Int32(pid), uid: UInt32(uid), gid: UInt32(gid)),
            lease: lease)
        return RestoredHold(hold: hold, startTime: startTime)
    }

    private static func integer(_ json: JSONValue?, in range: ClosedRange<Int64>) -> Int64? {
        guard case .int(let value)? = json, range.contains(value) else { return nil }
        return value
    }
}
