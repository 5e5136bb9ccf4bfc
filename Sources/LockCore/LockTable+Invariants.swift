import DequeModule

extension LockTable {
    /// The engine's promises that do not hold right now, one sentence each; empty when all hold.
    ///
    /// For tests and fuzzers: it walks the whole table, so it is far too slow for a request path.
    /// It checks the lock rules (at most one exclusive holder, never shared holders beside it,
    /// counts and shield depths in range, fences ordered), that every waiter is in exactly one
    /// queue and indexed once, that every index agrees with the records, and that no waiter at the
    /// head of a queue could have been granted (a lost wake-up).
    public func invariantViolations() -> [String] {
        var problems: [String] = []
        var holdsSeen: [LockOwner: Set<LockName>] = [:]
        var waitsSeen: [LockOwner: Set<RequestKey>] = [:]
        var uidHolds: [UInt32: Int] = [:]
        var uidWaits: [UInt32: Int] = [:]
        var keysSeen: [RequestKey: LockName] = [:]
        var bySession: [SessionID: Set<RequestKey>] = [:]
        for (name, record) in locks {
            if record.isUnused { problems.append("lock \(name): an unused record is stored") }
            let exclusive = record.holders.filter { $0.mode == .exclusive }.count
            if exclusive > 1 || (exclusive == 1 && record.holders.count > 1) {
                problems.append("lock \(name): an exclusive hold beside \(record.holders.count - 1) other hold(s)")
            }
            if Set(record.holders.map(\.owner)).count != record.holders.count {
                problems.append("lock \(name): an owner holds it twice")
            }
            for hold in record.holders {
                if hold.count < 1 || hold.count > Self.maximumCount {
                    problems.append("lock \(name): \(hold.owner) has count \(hold.count)")
                }
                if hold.shieldDepth < 0 || hold.shieldDepth > Self.maximumCount {
                    problems.append("lock \(name): \(hold.owner) has shield depth \(hold.shieldDepth)")
                }
                if hold.fence > record.fence || (record.gate == nil && hold.fence > lastFence) {
                    problems.append("lock \(name): fence \(hold.fence) above the lock's or the counter's")
                }
                if case .token(let token) = hold.owner, leases[token] == nil {
                    problems.append("lock \(name): token \"\(token)\" holds it without a lease")
                }
                holdsSeen[hold.owner, default: []].insert(name)
                uidHolds[hold.creator.uid, default: 0] += 1
            }
            for waiter in record.waiters {
                if let other = keysSeen.updateValue(name, forKey: waiter.key) {
                    problems.append("request \(waiter.key.tag) waits in two queues (\(other), \(name))")
                }
                if pending[waiter.key] != name {
                    problems.append("request \(waiter.key.tag) is not indexed at \(name)")
                }
                waitsSeen[waiter.owner, default: []].insert(waiter.key)
                uidWaits[waiter.requester.uid, default: 0] += 1
                bySession[waiter.key.session, default: []].insert(waiter.key)
            }
            if let head = record.waiters.first, !isShuttingDown,
                record.nextFence(after: lastFence) <= Self.maximumFence,
                canGrant(head, in: record)
            {
                problems.append("lock \(name): the waiter at the head (\(head.owner)) could be granted")
            }
        }
        if pending.count != keysSeen.count { problems.append("\(pending.count) pending, \(keysSeen.count) queued") }
        if holdsSeen != heldBy { problems.append("the holder index disagrees with the locks") }
        if waitsSeen != waitingBy { problems.append("the waiter index disagrees with the queues") }
        if uidHolds != holdsByUID { problems.append("holds per uid: \(holdsByUID), counted \(uidHolds)") }
        if uidWaits != waitersByUID { problems.append("waiters per uid: \(waitersByUID), counted \(uidWaits)") }
        if bySession != pendingBySession { problems.append("the per-connection waiter index disagrees") }
        for token in leases.keys where heldBy[.token(token)] == nil {
            problems.append("token \"\(token)\" has a lease but holds nothing")
        }
        return problems
    }

    private func canGrant(_ waiter: Waiter, in record: LockRecord) -> Bool {
        if let index = record.holderIndex(of: waiter.owner) {
            return
                !(waiter.mode == .exclusive && record.holders[index].mode == .shared
                && (record.holders.count > 1 || !record.permitsUpgrade))
        }
        return record.holders.allSatisfy { $0.mode.isCompatible(with: waiter.mode) }
            && record.permits(waiter.mode, waiter: waiter.key) && record.hasFence
    }
}
