import DequeModule

/// Deadlock detection over the wait-for graph. A waiter waits for the conflicting holders of its
/// lock and for the conflicting waiters ahead of it (FIFO makes them block it too); the graph is
/// derived from the queues on demand, so it can never disagree with them.
extension LockTable {
    func blockers(of waiter: Waiter, at position: Int, in record: LockRecord) -> [LockOwner] {
        var result: [LockOwner] = []
        for hold in record.holders where hold.owner != waiter.owner && !hold.mode.isCompatible(with: waiter.mode) {
            result.append(hold.owner)
        }
        for ahead in record.waiters.prefix(position)
        where ahead.owner != waiter.owner && !ahead.mode.isCompatible(with: waiter.mode) {
            result.append(ahead.owner)
        }
        return result
    }

    /// Whether `owner` waiting for `blockers` would close a cycle: some blocker already waits,
    /// directly or through others, for `owner`.
    ///
    /// An owner that holds nothing and waits for nothing else has nobody waiting for it, so it
    /// closes no cycle: that is the usual waiter, and the check is then O(1). Otherwise the walk
    /// may push each queue's prefix once per waiter in it, O(n²) for a queue of n; 64 waiters on
    /// one lock made it 65% of lockd's time before the shortcut (docs/performance.md).
    func wouldCloseCycle(from owner: LockOwner, blockers: [LockOwner]) -> Bool {
        guard heldBy[owner] != nil || waitingBy[owner]?.isEmpty == false else { return false }
        var stack = blockers
        var seen: Set<LockOwner> = []
        while let next = stack.popLast() {
            if next == owner { return true }
            guard seen.insert(next).inserted else { continue }
            for key in waitingBy[next] ?? [] {
                guard let name = pending[key], let record = locks[name],
                    let position = record.waiters.firstIndex(where: { $0.key == key })
                else { continue }
                stack.append(contentsOf: self.blockers(of: record.waiters[position], at: position, in: record))
            }
        }
        return false
    }
}
