/// A pid or token hold as lockd keeps it across its own restart.
public struct DurableHold: Sendable, Hashable {
    public var lock: LockName
    public var owner: LockOwner
    public var mode: LockMode
    public var count: Int
    public var fence: UInt64
    /// Wall-clock time the hold was made.
    public var since: Double
    public var shieldDepth: Int
    public var pendingRevocation: RevocationReason?
    /// The client that made the hold (its uid decides who may release it).
    public var creator: ClientIdentity
    /// A token's lease: its length, when it ends (`nil` while a shield defers its expiry), and the
    /// uid that owns the token.
    public var lease: DurableLease?

    public init(
        lock: LockName, owner: LockOwner, mode: LockMode, count: Int, fence: UInt64, since: Double,
        shieldDepth: Int, pendingRevocation: RevocationReason?, creator: ClientIdentity, lease: DurableLease?
    ) {
        self.lock = lock
        self.owner = owner
        self.mode = mode
        self.count = count
        self.fence = fence
        self.since = since
        self.shieldDepth = shieldDepth
        self.pendingRevocation = pendingRevocation
        self.creator = creator
        self.lease = lease
    }
}

/// A token's lease as persisted.
public struct DurableLease: Sendable, Hashable {
    public var ttl: Double
    public var expiresAt: Double?
    public var uid: UInt32

    public init(ttl: Double, expiresAt: Double?, uid: UInt32) {
        self.ttl = ttl
        self.expiresAt = expiresAt
        self.uid = uid
    }
}

extension LockTable {
    /// Whether ``takeChangedLocks()`` has anything to give.
    public var hasChangedLocks: Bool { !changedLocks.isEmpty }

    /// The locks changed since the last call (only while ``recordsChanges`` is on).
    public mutating func takeChangedLocks() -> Set<LockName> {
        defer { changedLocks.removeAll(keepingCapacity: true) }
        return changedLocks
    }

    /// The pid and token holds of `name`, in holder order. Session holds die with their
    /// connections and are not durable.
    public func durableHolds(of name: LockName) -> [DurableHold] {
        guard let record = locks[name] else { return [] }
        return record.holders.compactMap { hold -> DurableHold? in
            var lease: DurableLease?
            switch hold.owner {
            case .session: return nil
            case .pid: break
            case .token(let token):
                lease = leases[token].map { DurableLease(ttl: $0.ttl, expiresAt: $0.expiresAt, uid: $0.uid) }
            }
            return DurableHold(
                lock: name, owner: hold.owner, mode: hold.mode, count: hold.count, fence: hold.fence, since: hold.since,
                shieldDepth: hold.shieldDepth, pendingRevocation: hold.pendingRevocation, creator: hold.creator,
                lease: lease)
        }
    }

    /// Every lock with a pid or token hold.
    public var locksWithDurableHolds: [LockName] {
        locks.compactMap { name, record in record.holders.contains { $0.owner.isDurable } ? name : nil }
    }

    /// The locks `owner` holds.
    public func locks(heldBy owner: LockOwner) -> Set<LockName> { heldBy[owner] ?? [] }

    /// Puts back a hold read from the state file at start-up, before any client connects. A
    /// token's lease restarts from its remaining time; `fence` raises the counter if needed.
    /// - Returns: whether the hold was restored: one that conflicts with a hold already restored
    ///   (a second exclusive holder, a second hold of the same owner) is not, since only a damaged
    ///   journal can say so.
    @discardableResult
    public mutating func restore(_ hold: DurableHold, now: Moment, effects: inout [LockEffect]) -> Bool {
        var record = locks[hold.lock] ?? LockRecord()
        guard record.holderIndex(of: hold.owner) == nil,
            record.holders.allSatisfy({ $0.mode.isCompatible(with: hold.mode) }),
            hold.count > 0, hold.count <= Self.maximumCount, hold.shieldDepth >= 0,
            hold.shieldDepth <= Self.maximumCount, hold.fence <= Self.maximumFence
        else { return false }
        var hold = hold
        // A token's shields lasted as long as the connections that opened them, and those ended
        // with the previous lockd. A pid's shields last as long as the process.
        if case .token = hold.owner { hold.shieldDepth = 0 }
        record.holders.append(
            Hold(
                owner: hold.owner, mode: hold.mode, count: hold.count, fence: hold.fence, since: hold.since,
                shieldDepth: hold.shieldDepth, pendingRevocation: hold.pendingRevocation, origin: SessionID(0),
                creator: hold.creator))
        record.fence = max(record.fence, hold.fence)
        lastFence = max(lastFence, hold.fence)
        heldBy[hold.owner, default: []].insert(hold.lock)
        holdsByUID[hold.creator.uid, default: 0] += 1
        store(record, as: hold.lock)
        if case .token(let token) = hold.owner, let lease = hold.lease {
            var deadline: UInt64?
            let expiresAt = lease.expiresAt.map { min($0, now.unixTime + Seconds.ceiling) }
            if let expiresAt { deadline = now.deadline(after: expiresAt - now.unixTime) }
            leases[token] = Lease(
                ttl: Seconds.clamped(lease.ttl), deadlineNanos: deadline, expiresAt: expiresAt, uid: lease.uid)
            if let deadline { effects.append(.leaseDeadline(token: token, uptimeNanos: deadline)) }
        }
        return true
    }

    /// Raises the fence counter (to a value persisted before a restart): fences never go back.
    /// A value above ``maximumFence`` raises it to that maximum.
    public mutating func raiseFence(to fence: UInt64) {
        lastFence = max(lastFence, min(fence, Self.maximumFence))
    }
}
