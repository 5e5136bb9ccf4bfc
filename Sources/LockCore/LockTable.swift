import DequeModule

/// The named lock table: a deterministic state machine with no I/O and no clock.
///
/// Every change takes the current ``Moment`` and appends what the I/O layer must do next
/// (answer a waiter, push a revocation, arm a timer, stop watching an owner) to `effects`.
/// It is a value type meant to be owned by one thread (the daemon's event loop) or a mutex.
public struct LockTable: Sendable {
    var locks: [LockName: LockRecord] = [:]
    var heldBy: [LockOwner: Set<LockName>] = [:]
    var waitingBy: [LockOwner: Set<RequestKey>] = [:]
    var pending: [RequestKey: LockName] = [:]
    var pendingBySession: [SessionID: Set<RequestKey>] = [:]
    var leases: [String: Lease] = [:]
    var holdsByUID: [UInt32: Int] = [:]
    var changedLocks: Set<LockName> = []
    /// Shields on token holds, by the connection that opened them (see ``sessionClosed``).
    var tokenShields: [SessionID: [(LockName, String)]] = [:]
    /// Whether the table notes which locks changed (``takeChangedLocks()``), for persistence.
    public var recordsChanges = false
    /// Whether the table notes every lock that changes (``takeWatchedChanges()``), for the `watch`
    /// op; off while nobody watches, so that the request path pays one test.
    public var notesChangesForWatchers = false
    var watchedChanges: Set<LockName> = []
    var waitersByUID: [UInt32: Int] = [:]
    var lastFence: UInt64
    /// Whether ``beginShutdown(now:effects:)`` has run: acquires are refused from then on.
    public private(set) var isShuttingDown = false

    /// Creates an empty table whose first fence will be larger than `lastFence`.
    public init(lastFence: UInt64 = 0) {
        self.lastFence = lastFence
    }

    /// The largest fence handed out so far.
    public var currentFence: UInt64 { lastFence }

    /// The largest fence, 2^53 - 1: every JSON reader reads it exactly (a double's integer
    /// range), and at a million grants a second the counter needs centuries to get there from 0.
    /// Only a journal can bring it near; once there, new holds are refused with `limit` rather
    /// than handed a fence that is not larger than the last.
    public static let maximumFence: UInt64 = 1 << 53 - 1

    /// The largest re-entrance count and shield depth of one hold. A client that asks for more is
    /// refused with `limit`; a journal record with more is dropped. Far below `Int.max`, so no
    /// count can overflow.
    public static let maximumCount = Int(Int32.max)

    /// The number of locks with at least one holder.
    public var heldLockCount: Int { locks.count }

    /// The number of queued acquires.
    public var waiterCount: Int { pending.count }

    /// Holds made by clients of `uid` (a re-entrant hold counts once).
    public func holdCount(uid: UInt32) -> Int { holdsByUID[uid] ?? 0 }

    /// Queued acquires made by clients of `uid`.
    public func waiterCount(uid: UInt32) -> Int { waitersByUID[uid] ?? 0 }

    /// Whether `owner` holds `name`.
    public func holds(_ name: LockName, owner: LockOwner) -> Bool { heldBy[owner]?.contains(name) == true }

    /// The number of holds with an open shield.
    public var openShieldCount: Int {
        locks.values.reduce(0) { $0 + $1.holders.count { $0.shieldDepth > 0 } }
    }

    /// The queued acquires of one connection.
    public func waiting(session: SessionID) -> Set<RequestKey> { pendingBySession[session] ?? [] }

    /// Whether `owner` holds or waits for anything.
    public func isActive(_ owner: LockOwner) -> Bool {
        heldBy[owner] != nil || waitingBy[owner] != nil
    }

    // MARK: - Acquire

    /// Asks for `name` in `mode` on behalf of `owner`.
    ///
    /// - Parameters:
    ///   - wait: seconds to wait; 0 tries once; `nil` waits forever.
    ///   - ttl: the lease for a token owner (required for tokens, ignored otherwise).
    ///   - gate: for a lock shared through a cluster store that nobody here holds or waits for
    ///     yet, what the cluster lets this node grant (``ClusterGate``); ignored once the lock has
    ///     a record here.
    /// - Throws: `busy`, `deadlock`, `invalid` (duplicate request id), `shutting_down`.
    public mutating func acquire(
        _ name: LockName,
        mode: LockMode,
        owner: LockOwner,
        wait: Double?,
        ttl: Double? = nil,
        request: RequestKey,
        requester: Requester,
        now: Moment,
        effects: inout [LockEffect],
        gate: ClusterGate? = nil
    ) throws(LockError) -> AcquireOutcome {
        guard !isShuttingDown else { throw .shuttingDown() }
        guard pending[request] == nil else {
            throw .invalid("request id \(request.tag) is already waiting on this connection")
        }
        if case .token(let token) = owner, let lease = leases[token], lease.uid != requester.identity.uid,
            !requester.identity.isRoot
        {
            throw .denied("token \"\(token)\" belongs to uid \(lease.uid)")
        }
        var record = locks[name] ?? LockRecord(gate: gate)
        defer {
            store(record, as: name)
        }

        var isUpgrade = false
        if let index = record.holderIndex(of: owner) {
            let hold = record.holders[index]
            guard hold.count < Self.maximumCount else {
                throw LockError(.limit, "\(owner) already holds lock \"\(name)\" \(hold.count) times")
            }
            if mode == .shared || hold.mode == .exclusive || (record.holders.count == 1 && record.permitsUpgrade) {
                var grant = reenter(&record, at: index, name: name, mode: mode)
                setLease(owner: owner, ttl: ttl, uid: requester.identity.uid, now: now, effects: &effects)
                grant.expires = leaseEnd(of: owner)
                return .granted(grant)
            }
            isUpgrade = true
        } else if record.nextFence(after: lastFence) > Self.maximumFence {
            throw LockError(.limit, "the fence counter has reached its maximum (\(Self.maximumFence)); no new holds")
        } else if record.waiters.isEmpty, record.holders.allSatisfy({ $0.mode.isCompatible(with: mode) }),
            record.permits(mode, waiter: nil), record.hasFence
        {
            var grant = addHold(
                &record, name: name, owner: owner, mode: mode, origin: request.session,
                creator: requester.identity, now: now)
            setLease(owner: owner, ttl: ttl, uid: requester.identity.uid, now: now, effects: &effects)
            grant.expires = leaseEnd(of: owner)
            return .granted(grant)
        }

        guard wait != 0 else {
            throw LockError(.busy, "lock \"\(name)\" is held by \(describeHolders(record))")
        }
        if isUpgrade, record.waiters.contains(where: { $0.isUpgrade }) {
            throw LockError(
                .deadlock,
                "lock \"\(name)\": another shared holder is already waiting to upgrade; both would wait forever")
        }
        let waiter = Waiter(
            key: request, owner: owner, mode: mode, isUpgrade: isUpgrade, since: now.unixTime,
            requester: requester.identity, ttl: ttl,
            deadlineNanos: wait.map { now.deadline(after: $0) })
        let position = isUpgrade ? 0 : record.waiters.count
        let waitsFor = blockers(of: waiter, at: position, in: record)
        if wouldCloseCycle(from: owner, blockers: waitsFor) {
            throw LockError(
                .deadlock,
                "waiting for lock \"\(name)\" (held by \(describeHolders(record))) would deadlock")
        }
        if isUpgrade { record.waiters.prepend(waiter) } else { record.waiters.append(waiter) }
        pending[request] = name
        waitersByUID[requester.identity.uid, default: 0] += 1
        pendingBySession[request.session, default: []].insert(request)
        waitingBy[owner, default: []].insert(request)
        return .queued(deadlineNanos: waiter.deadlineNanos)
    }

    /// Renews a token's lease to `ttl` seconds from now (at most ``Seconds/ceiling``) and cancels
    /// an expiry deferred by a shield.
    /// - Returns: the wall-clock time the lease now ends.
    public mutating func renew(
        token: String, ttl: Double, requester: Requester, now: Moment, effects: inout [LockEffect]
    ) throws(LockError) -> Double {
        guard let lease = leases[token] else { throw .notHeld("token \"\(token)\" holds nothing") }
        guard lease.uid == requester.identity.uid || requester.identity.isRoot else {
            throw .denied("token \"\(token)\" belongs to uid \(lease.uid)")
        }
        setLease(owner: .token(token), ttl: ttl, uid: requester.identity.uid, now: now, effects: &effects)
        return now.unixTime + Seconds.clamped(ttl)
    }

    // MARK: - Release and shields

    /// Releases one count of `owner`'s hold on `name`, or all of it.
    /// - Returns: the count left (0 when the lock is now free of this owner).
    public mutating func release(
        _ name: LockName, owner: LockOwner, all: Bool = false, requester: Requester, now: Moment,
        effects: inout [LockEffect]
    ) throws(LockError) -> Int {
        guard var record = locks[name], let index = record.holderIndex(of: owner) else {
            throw .notHeld("\(owner) does not hold lock \"\(name)\"")
        }
        try authorize(record.holders[index], requester: requester, action: "release")
        record.holders[index].count = all ? 0 : record.holders[index].count - 1
        let left = record.holders[index].count
        if left == 0 {
            removeHold(&record, at: index, name: name)
            dispatch(&record, name: name, now: now, effects: &effects)
        }
        store(record, as: name)
        if left == 0 { forgetIfIdle(owner, effects: &effects) }
        return left
    }

    /// Opens (`on`) or closes a shield on `owner`'s hold of `name`.
    ///
    /// While a hold's shield depth is above zero, `break` and lease expiry are deferred; closing
    /// the last shield applies a deferred revocation at once.
    /// - Returns: the shield depth after the change.
    public mutating func shield(
        _ name: LockName, owner: LockOwner, on: Bool, requester: Requester, now: Moment,
        effects: inout [LockEffect]
    ) throws(LockError) -> Int {
        guard var record = locks[name], let index = record.holderIndex(of: owner) else {
            throw .notHeld("\(owner) does not hold lock \"\(name)\"")
        }
        try authorize(record.holders[index], requester: requester, action: "shield")
        if on {
            guard !isShuttingDown else { throw .shuttingDown("lockd is shutting down: no new shields") }
            guard record.holders[index].shieldDepth < Self.maximumCount else {
                throw LockError(.limit, "\(owner) already has \(Self.maximumCount) shields open on lock \"\(name)\"")
            }
            record.holders[index].shieldDepth += 1
            let depth = record.holders[index].shieldDepth
            store(record, as: name)
            if case .token(let token) = owner { tokenShields[requester.session, default: []].append((name, token)) }
            return depth
        }
        guard record.holders[index].shieldDepth > 0 else {
            throw .invalid("\(owner) has no open shield on lock \"\(name)\"")
        }
        if case .token(let token) = owner { forgetTokenShield(name, token, preferring: requester.session) }
        record.holders[index].shieldDepth -= 1
        let depth = record.holders[index].shieldDepth
        var revoked = false
        if depth == 0, let reason = record.holders[index].pendingRevocation {
            revoke(&record, at: index, name: name, reason: reason, effects: &effects)
            dispatch(&record, name: name, now: now, effects: &effects)
            revoked = true
        }
        store(record, as: name)
        if revoked { forgetIfIdle(owner, effects: &effects) }
        return depth
    }

    /// Takes every hold of `name` away; shielded holds are taken when their shield closes. Who
    /// may break is the caller's policy (lockd: root, `access.break`, or a matching rule).
    /// - Returns: how many holds were taken now and how many were deferred.
    public mutating func breakLock(
        _ name: LockName, requester: Requester, now: Moment, effects: inout [LockEffect]
    ) throws(LockError) -> (released: Int, deferred: Int) {
        guard var record = locks[name], !record.holders.isEmpty else { return (0, 0) }
        var released = 0
        var deferred = 0
        var owners: [LockOwner] = []
        var index = record.holders.count - 1
        while index >= 0 {
            if record.holders[index].shieldDepth > 0 {
                record.holders[index].pendingRevocation = .break
                deferred += 1
            } else {
                owners.append(record.holders[index].owner)
                revoke(&record, at: index, name: name, reason: .break, effects: &effects)
                released += 1
            }
            index -= 1
        }
        dispatch(&record, name: name, now: now, effects: &effects)
        store(record, as: name)
        for owner in owners { forgetIfIdle(owner, effects: &effects) }
        return (released, deferred)
    }

    // MARK: - Timers, cancellation, owners going away

    /// Called when a waiter's deadline timer fires; answers it `timeout` if it is still waiting.
    public mutating func timeOut(_ key: RequestKey, now: Moment, effects: inout [LockEffect]) {
        guard let name = pending[key], var record = locks[name],
            let index = record.waiters.firstIndex(where: { $0.key == key }),
            let deadline = record.waiters[index].deadlineNanos, deadline <= now.uptimeNanos
        else { return }
        let waited = now.unixTime - record.waiters[index].since
        let message =
            "timed out after \(formatSeconds(waited)) waiting for lock \"\(name)\" (held by \(describeHolders(record)))"
        removeWaiter(&record, at: index, name: name, answer: LockError(.timeout, message), now: now, effects: &effects)
    }

    /// Cancels a pending acquire; it answers `cancelled` (or `code`).
    /// - Returns: whether the request was pending.
    @discardableResult
    public mutating func cancel(
        _ key: RequestKey, reason: String? = nil, code: LockError.Code = .cancelled, now: Moment,
        effects: inout [LockEffect]
    ) -> Bool {
        guard let name = pending[key], var record = locks[name],
            let index = record.waiters.firstIndex(where: { $0.key == key })
        else { return false }
        let message = reason ?? "the wait for lock \"\(name)\" was cancelled"
        removeWaiter(&record, at: index, name: name, answer: LockError(code, message), now: now, effects: &effects)
        return true
    }

    /// Called when a lease timer fires: expires the token's holds (shielded ones when their
    /// shield closes) if the lease really ran out.
    public mutating func expireLease(_ token: String, now: Moment, effects: inout [LockEffect]) {
        guard var lease = leases[token], let deadline = lease.deadlineNanos, deadline <= now.uptimeNanos else {
            return
        }
        let owner = LockOwner.token(token)
        for name in heldBy[owner] ?? [] {
            guard var record = locks[name], let index = record.holderIndex(of: owner) else { continue }
            if record.holders[index].shieldDepth > 0 {
                record.holders[index].pendingRevocation = .expired
            } else {
                revoke(&record, at: index, name: name, reason: .expired, effects: &effects)
                dispatch(&record, name: name, now: now, effects: &effects)
            }
            store(record, as: name)
        }
        if heldBy[owner] != nil {
            lease.deadlineNanos = nil
            leases[token] = lease
        }
        forgetIfIdle(owner, effects: &effects)
    }

    /// The owner is gone (its process exited, or its session closed): every hold and wait of it
    /// goes at once, shielded or not, since nobody is left to finish the section.
    public mutating func ownerGone(_ owner: LockOwner, now: Moment, effects: inout [LockEffect]) {
        for key in waitingBy[owner] ?? [] {
            cancel(key, reason: "the owner (\(owner)) went away", now: now, effects: &effects)
        }
        for name in heldBy[owner] ?? [] {
            guard var record = locks[name], let index = record.holderIndex(of: owner) else { continue }
            removeHold(&record, at: index, name: name)
            dispatch(&record, name: name, now: now, effects: &effects)
            store(record, as: name)
        }
        forgetIfIdle(owner, effects: &effects)
    }

    /// A connection closed: its session holds go and its pending acquires are dropped without an
    /// answer. Pid and token holds it made stay.
    ///
    /// Shields this connection opened on token holds close with it: a token outlives any
    /// process, so only an open connection shows that the shielded section is still running,
    /// and a lease must not be deferred forever by a client that died.
    public mutating func sessionClosed(_ session: SessionID, now: Moment, effects: inout [LockEffect]) {
        ownerGone(.session(session), now: now, effects: &effects)
        for (name, token) in tokenShields.removeValue(forKey: session) ?? [] {
            let owner = LockOwner.token(token)
            guard var record = locks[name], let index = record.holderIndex(of: owner),
                record.holders[index].shieldDepth > 0
            else { continue }
            record.holders[index].shieldDepth -= 1
            if record.holders[index].shieldDepth == 0, let reason = record.holders[index].pendingRevocation {
                revoke(&record, at: index, name: name, reason: reason, effects: &effects)
                dispatch(&record, name: name, now: now, effects: &effects)
                store(record, as: name)
                forgetIfIdle(owner, effects: &effects)
            } else {
                store(record, as: name)
            }
        }
        for key in pendingBySession[session] ?? [] {
            guard let name = pending[key], var record = locks[name],
                let index = record.waiters.firstIndex(where: { $0.key == key })
            else { continue }
            removeWaiter(&record, at: index, name: name, answer: nil, now: now, effects: &effects)
        }
        pendingBySession[session] = nil
    }

    /// Starts the daemon's shutdown: every waiter answers `shutting_down`, and so will new acquires.
    public mutating func beginShutdown(now: Moment, effects: inout [LockEffect]) {
        isShuttingDown = true
        for key in pending.keys {
            guard let name = pending[key], var record = locks[name],
                let index = record.waiters.firstIndex(where: { $0.key == key })
            else { continue }
            removeWaiter(&record, at: index, name: name, answer: .shuttingDown(), now: now, effects: &effects)
        }
    }
}
