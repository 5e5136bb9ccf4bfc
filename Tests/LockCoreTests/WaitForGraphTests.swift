import Testing

@testable import LockCore

/// The deadlock walk skips waiters whose blockers it has already pushed. That must never change
/// an answer: random tables are checked against the plain walk, which expands every waiter.
@Suite("wait-for graph")
struct WaitForGraphTests {
    /// The walk without shortcuts, as it was before it skipped anything.
    private func plainWalk(_ table: LockTable, from owner: LockOwner, blockers: [LockOwner]) -> Bool {
        var stack = blockers
        var seen: Set<LockOwner> = []
        while let next = stack.popLast() {
            if next == owner { return true }
            guard seen.insert(next).inserted else { continue }
            for key in table.waitingBy[next] ?? [] {
                guard let name = table.pending[key], let record = table.locks[name],
                    let position = record.waiters.firstIndex(where: { $0.key == key })
                else { continue }
                stack.append(contentsOf: table.blockers(of: record.waiters[position], at: position, in: record))
            }
        }
        return false
    }

    @Test("the walk with shortcuts finds exactly the cycles the plain walk finds", arguments: [1, 2, 3])
    func sameAnswers(seed: UInt64) throws {
        var random = SplitMix(seed: seed)
        var h = Harness()
        let owners = (1...8).map { LockOwner.session(SessionID($0)) }
        let locks = ["l0", "l1", "l2", "l3"]
        var cyclesFound = 0
        for _ in 0..<120 {
            let index = Int(random.next() % 8)
            let owner = owners[index]
            let lock = locks[Int(random.next() % 4)]
            if random.next() % 4 == 0 {
                _ = try? h.release(lock, owner, session: UInt64(index + 1))
            } else {
                let mode: LockMode = random.next() % 3 == 0 ? .shared : .exclusive
                _ = try? h.acquire(lock, owner, session: UInt64(index + 1), mode: mode)
            }
            // Every owner asking for every lock, in both modes, from the table as it now is.
            for candidate in owners {
                for name in locks {
                    let record = h.table.locks[Harness.name(name)] ?? LockTable.LockRecord()
                    for mode in [LockMode.exclusive, .shared] {
                        let waiter = LockTable.Waiter(
                            key: RequestKey(session: SessionID(99), tag: "probe"), owner: candidate, mode: mode,
                            isUpgrade: false, since: 0, requester: h.requester(99).identity, ttl: nil,
                            deadlineNanos: nil)
                        let blockers = h.table.blockers(of: waiter, at: record.waiters.count, in: record)
                        let expected = plainWalk(h.table, from: candidate, blockers: blockers)
                        #expect(h.table.wouldCloseCycle(from: candidate, blockers: blockers) == expected)
                        if expected { cyclesFound += 1 }
                    }
                }
            }
        }
        #expect(cyclesFound > 0, "the random tables must contain cycles to compare on")
    }
}
