import DequeModule

extension LockTable {
    /// Stores a changed record and notes the change for persistence, but only for a lock that
    /// has or had a durable hold: a session-only lock never reaches the journal, and skipping it
    /// keeps the set (and its hashing) off that hot path.
    mutating func store(_ record: LockRecord, as name: LockName) {
        var record = record
        if !record.hadDurableHold { record.hadDurableHold = record.holders.contains { $0.owner.isDurable } }
        if recordsChanges, record.hadDurableHold { changedLocks.insert(name) }
        if notesChangesForWatchers { watchedChanges.insert(name) }
        locks[name] = record.isUnused ? nil : record
    }

    mutating func addHold(
        _ record: inout LockRecord, name: LockName, owner: LockOwner, mode: LockMode, origin: SessionID,
        creator: ClientIdentity, now: Moment
    ) -> Grant {
        let fence: UInt64
        if let base = record.fenceBase {
            // A cluster lock: fences from the store's revision, beside the daemon's counter.
            fence = base
            record.fenceBase = base + 1
        } else {
            lastFence += 1
            fence = lastFence
        }
        record.fence = fence
        record.holders.append(
            Hold(
                owner: owner, mode: mode, count: 1, fence: fence, since: now.unixTime, shieldDepth: 0,
                pendingRevocation: nil, origin: origin, creator: creator))
        heldBy[owner, default: []].insert(name)
        holdsByUID[creator.uid, default: 0] += 1
        return Grant(lock: name, mode: mode, count: 1, fence: fence)
    }

    /// A re-entrant grant: one more count; an exclusive request upgrades the hold for good.
    func reenter(_ record: inout LockRecord, at index: Int, name: LockName, mode: LockMode) -> Grant {
        record.holders[index].count += 1
        if mode == .exclusive { record.holders[index].mode = .exclusive }
        let hold = record.holders[index]
        return Grant(lock: name, mode: hold.mode, count: hold.count, fence: hold.fence)
    }

    mutating func removeHold(_ record: inout LockRecord, at index: Int, name: LockName) {
        let hold = record.holders.remove(at: index)
        let owner = hold.owner
        holdsByUID[hold.creator.uid, default: 1] -= 1
        if holdsByUID[hold.creator.uid] == 0 { holdsByUID[hold.creator.uid] = nil }
        heldBy[owner]?.remove(name)
        if heldBy[owner]?.isEmpty == true { heldBy[owner] = nil }
    }

    mutating func revoke(
        _ record: inout LockRecord, at index: Int, name: LockName, reason: RevocationReason,
        effects: inout [LockEffect]
    ) {
        let hold = record.holders[index]
        removeHold(&record, at: index, name: name)
        effects.append(.revoked(session: hold.origin, lock: name, owner: hold.owner, reason: reason))
    }

    mutating func modifyHold(of owner: LockOwner, on name: LockName, _ body: (inout Hold) -> Void) {
        guard let index = locks[name]?.holderIndex(of: owner) else { return }
        body(&locks[name]!.holders[index])
        if recordsChanges, owner.isDurable { changedLocks.insert(name) }
        if notesChangesForWatchers { watchedChanges.insert(name) }
    }

    /// (Re)sets a token's lease; a fresh lease also cancels an expiry deferred by a shield.
    mutating func setLease(owner: LockOwner, ttl: Double?, uid: UInt32, now: Moment, effects: inout [LockEffect]) {
        guard case .token(let token) = owner, let requested = ttl else { return }
        let ttl = Seconds.clamped(requested)
        let deadline = now.deadline(after: ttl)
        leases[token] = Lease(
            ttl: ttl, deadlineNanos: deadline, expiresAt: now.unixTime + ttl, uid: leases[token]?.uid ?? uid)
        for name in heldBy[owner] ?? [] {
            modifyHold(of: owner, on: name) { hold in
                if hold.pendingRevocation == .expired { hold.pendingRevocation = nil }
            }
        }
        effects.append(.leaseDeadline(token: token, uptimeNanos: deadline))
    }

    /// When a token owner's lease ends; `nil` for other owners (or a lease deferred by a shield).
    func leaseEnd(of owner: LockOwner) -> Double? {
        guard case .token(let token) = owner else { return nil }
        return leases[token]?.expiresAt
    }

    func authorize(_ hold: Hold, requester: Requester, action: String) throws(LockError) {
        guard requester.identity.isRoot || hold.creator.uid == requester.identity.uid else {
            throw .denied(
                "the hold of \(hold.owner) was made by uid \(hold.creator.uid); only that uid or root may \(action) it")
        }
    }

    /// Grants from the head of the queue while the head can be granted: an exclusive waiter when
    /// the lock is free, a run of shared waiters while the holders are shared.
    mutating func dispatch(_ record: inout LockRecord, name: LockName, now: Moment, effects: inout [LockEffect]) {
        guard !isShuttingDown else { return }
        while let waiter = record.waiters.first {
            var grant: Grant
            if let index = record.holderIndex(of: waiter.owner) {
                let isBlockedUpgrade =
                    waiter.mode == .exclusive && record.holders[index].mode == .shared
                    && (record.holders.count > 1 || !record.permitsUpgrade)
                if isBlockedUpgrade { break }
                record.waiters.removeFirst()
                unindex(waiter)
                grant = reenter(&record, at: index, name: name, mode: waiter.mode)
            } else if record.nextFence(after: lastFence) <= Self.maximumFence,
                record.holders.allSatisfy({ $0.mode.isCompatible(with: waiter.mode) }),
                record.permits(waiter.mode, waiter: waiter.key), record.hasFence
            {
                record.waiters.removeFirst()
                unindex(waiter)
                grant = addHold(
                    &record, name: name, owner: waiter.owner, mode: waiter.mode, origin: waiter.key.session,
                    creator: waiter.requester, now: now)
            } else {
                break
            }
            setLease(owner: waiter.owner, ttl: waiter.ttl, uid: waiter.requester.uid, now: now, effects: &effects)
            grant.expires = leaseEnd(of: waiter.owner)
            effects.append(.granted(waiter.key, grant))
        }
    }

    mutating func unindex(_ waiter: Waiter) {
        waitersByUID[waiter.requester.uid, default: 1] -= 1
        if waitersByUID[waiter.requester.uid] == 0 { waitersByUID[waiter.requester.uid] = nil }
        pending[waiter.key] = nil
        pendingBySession[waiter.key.session]?.remove(waiter.key)
        if pendingBySession[waiter.key.session]?.isEmpty == true { pendingBySession[waiter.key.session] = nil }
        waitingBy[waiter.owner]?.remove(waiter.key)
        if waitingBy[waiter.owner]?.isEmpty == true { waitingBy[waiter.owner] = nil }
    }

    /// Takes a waiter out of the queue (answering it when `answer` is set) and lets the waiters
    /// behind it in.
    mutating func removeWaiter(
        _ record: inout LockRecord, at index: Int, name: LockName, answer: LockError?, now: Moment,
        effects: inout [LockEffect]
    ) {
        let waiter = record.waiters.remove(at: index)
        unindex(waiter)
        if let answer { effects.append(.failed(waiter.key, answer)) }
        dispatch(&record, name: name, now: now, effects: &effects)
        store(record, as: name)
        forgetIfIdle(waiter.owner, effects: &effects)
    }

    /// Drops a token's lease once it holds nothing and tells the I/O layer about idle owners.
    mutating func forgetIfIdle(_ owner: LockOwner, effects: inout [LockEffect]) {
        if case .token(let token) = owner, heldBy[owner] == nil { leases[token] = nil }
        if !isActive(owner) { effects.append(.ownerIdle(owner)) }
    }

    /// Forgets one shield on a token hold, preferably one `session` opened.
    mutating func forgetTokenShield(_ name: LockName, _ token: String, preferring session: SessionID) {
        let sessions = [session] + tokenShields.keys.filter { $0 != session }
        for candidate in sessions {
            guard let position = tokenShields[candidate]?.lastIndex(where: { $0.0 == name && $0.1 == token }) else {
                continue
            }
            tokenShields[candidate]!.remove(at: position)
            if tokenShields[candidate]!.isEmpty { tokenShields[candidate] = nil }
            return
        }
    }

    func describeHolders(_ record: LockRecord) -> String {
        guard !record.holders.isEmpty else {
            return record.gate == nil ? "nobody (waiters are ahead)" : "another node of the cluster (see status)"
        }
        var parts = record.holders.prefix(3).map { hold -> String in
            if case .pid = hold.owner { return "\(hold.owner)" }
            return "\(hold.owner) (pid \(hold.creator.pid))"
        }
        if record.holders.count > 3 { parts.append("\(record.holders.count - 3) more") }
        return parts.joined(separator: ", ")
    }
}

/// Formats seconds with millisecond precision, e.g. `1.5s`.
func formatSeconds(_ seconds: Double) -> String {
    let millis = Int((Seconds.clamped(seconds) * 1000).rounded())
    let fraction = millis % 1000
    if fraction == 0 { return "\(millis / 1000)s" }
    var digits = String(fraction)
    digits = String(repeating: "0", count: 3 - digits.count) + digits
    while digits.hasSuffix("0") { digits.removeLast() }
    return "\(millis / 1000).\(digits)s"
}
