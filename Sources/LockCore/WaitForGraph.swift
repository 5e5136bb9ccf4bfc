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
    /// closes no cycle: that is the usual waiter, and the check is then O(1). Before that
    /// shortcut, 64 waiters on one lock made this walk 65% of lockd's time (docs/performance.md).
    ///
    /// Otherwise the walk stays linear in the queues it crosses. A waiter's blockers on its lock
    /// are holders and waiters ahead of it, so once an exclusive waiter at position q has been
    /// expanded, any waiter at or before q adds nobody new (the one owner its blockers leave out
    /// is the expanded one, already seen). The same holds among shared waiters, whose blockers
    /// are the exclusive ones ahead. Without this, each of n waiters in one queue pushed the
    /// queue's prefix again: O(n²) per acquire.
    func wouldCloseCycle(from owner: LockOwner, blockers: [LockOwner]) -> Bool {
        guard heldBy[owner] != nil || waitingBy[owner]?.isEmpty == false else { return false }
        var stack = blockers
        var seen: Set<LockOwner> = []
        // Per lock, the furthest position expanded for an exclusive and for a shared waiter.
        var expanded: [LockName: (exclusive: Int, shared: Int)] = [:]
        while let next = stack.popLast() {
            if next == owner { return true }
            guard seen.insert(next).inserted else { continue }
            for key in waitingBy[next] ?? [] {
                guard let name = pending[key], let record = locks[name] else { continue }
                let done = expanded[name] ?? (-1, -1)
                // Covers every waiter in the queue without looking for this one's position.
                if done.exclusive >= record.waiters.count - 1 { continue }
                guard let position = record.waiters.firstIndex(where: { $0.key == key }) else { continue }
                let waiter = record.waiters[position]
                if done.exclusive >= position || (waiter.mode == .shared && done.shared >= position) { continue }
                if waiter.mode == .exclusive {
                    expanded[name] = (position, done.shared)
                } else {
                    expanded[name] = (done.exclusive, position)
                }
                stack.append(contentsOf: self.blockers(of: waiter, at: position, in: record))
            }
        }
        return false
    }
}
