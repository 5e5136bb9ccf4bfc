import Testing

@testable import LockCore

/// The gate of a lock shared through a cluster store: the table grants only what this node's
/// keys allow, hands out the store's fences, and drops every hold when the node loses the store.
struct ClusterGateTests {
    func isQueued(_ outcome: AcquireOutcome) -> Bool {
        if case .queued = outcome { return true }
        return false
    }

    @Test("a closed gate queues every acquire (busy at once for a try); opening it grants with the store's fences")
    func closedThenOpen() throws {
        var h = Harness()
        let (first, outcome) = try h.acquire("db", .session(SessionID(1)), session: 1, gate: ClusterGate())
        #expect(isQueued(outcome))
        #expect(throws: LockError.self) { try h.acquire("db", .session(SessionID(2)), session: 2, wait: 0) }
        #expect(
            h.table.clusterDemand(of: Harness.name("db")) == .init(mode: .exclusive, holders: 0, admittedWaiters: 1))
        let base: UInt64 = 7 << 20
        h.table.setGate(
            Harness.name("db"), ClusterGate(allows: .exclusive), fenceBase: base, now: h.now, effects: &h.effects)
        let effects = h.takeEffects()
        #expect(h.grants(effects) == [first])
        #expect(effects.contains { if case .granted(_, let grant) = $0 { grant.fence == base } else { false } })
        _ = try h.release("db", .session(SessionID(1)), session: 1)
        let (_, next) = try h.acquire("db", .session(SessionID(3)), session: 3)
        guard case .granted(let grant) = next else { Issue.record("not granted: \(next)"); return }
        #expect(grant.fence == base + 1, "fences of a cluster lock go on from the store's revision")
        #expect(h.table.invariantViolations().isEmpty, "\(h.table.invariantViolations())")
    }

    @Test("a shared gate lets shared holds in and keeps exclusive ones (and upgrades) waiting in order")
    func sharedGate() throws {
        var h = Harness()
        let name = Harness.name("db")
        _ = try h.acquire("db", .session(SessionID(1)), session: 1, mode: .shared, gate: ClusterGate())
        h.table.setGate(name, ClusterGate(allows: .shared), fenceBase: 1 << 20, now: h.now, effects: &h.effects)
        #expect(h.grants(h.takeEffects()).count == 1)
        // The sole shared holder may not become exclusive: the node has no exclusive key.
        let (upgrade, upgraded) = try h.acquire("db", .session(SessionID(1)), session: 1, mode: .exclusive)
        #expect(isQueued(upgraded))
        let (writer, written) = try h.acquire("db", .session(SessionID(2)), session: 2, mode: .exclusive)
        #expect(isQueued(written))
        #expect(h.table.clusterDemand(of: name).mode == .exclusive)
        h.table.setGate(name, ClusterGate(allows: .exclusive), fenceBase: nil, now: h.now, effects: &h.effects)
        #expect(h.grants(h.takeEffects()) == [upgrade])
        _ = try h.release("db", .session(SessionID(1)), session: 1, all: true)
        #expect(h.grants(h.takeEffects()) == [writer])
        #expect(h.table.invariantViolations().isEmpty, "\(h.table.invariantViolations())")
    }

    @Test("a gate that admits only the waiters queued before another node's key serves them and no newcomer")
    func admitted() throws {
        var h = Harness()
        let name = Harness.name("db")
        _ = try h.acquire("db", .session(SessionID(1)), session: 1, gate: ClusterGate())
        h.table.setGate(name, ClusterGate(allows: .exclusive), fenceBase: 1 << 20, now: h.now, effects: &h.effects)
        let (early, _) = try h.acquire("db", .session(SessionID(2)), session: 2)
        h.table.setGate(
            name, ClusterGate(allows: .exclusive, admitted: [early]), fenceBase: nil, now: h.now, effects: &h.effects)
        let (late, _) = try h.acquire("db", .session(SessionID(3)), session: 3)
        _ = h.takeEffects()
        _ = try h.release("db", .session(SessionID(1)), session: 1)
        #expect(h.grants(h.takeEffects()) == [early])
        _ = try h.release("db", .session(SessionID(2)), session: 2)
        #expect(h.grants(h.takeEffects()).isEmpty, "the late waiter waits for the node's next key")
        #expect(h.table.clusterDemand(of: name) == .init(mode: .exclusive, holders: 0, admittedWaiters: 0))
        h.table.setGate(name, ClusterGate(allows: .exclusive), fenceBase: 9 << 20, now: h.now, effects: &h.effects)
        #expect(h.grants(h.takeEffects()) == [late])
        #expect(h.table.invariantViolations().isEmpty, "\(h.table.invariantViolations())")
    }

    @Test("losing the store revokes every hold with reason lost, shielded or not, and keeps the waiters")
    func lost() throws {
        var h = Harness()
        let name = Harness.name("db")
        _ = try h.acquire("db", .session(SessionID(1)), session: 1, mode: .shared, gate: ClusterGate())
        h.table.setGate(name, ClusterGate(allows: .exclusive), fenceBase: 1 << 20, now: h.now, effects: &h.effects)
        _ = try h.acquire("db", .pid(4242), session: 2, mode: .shared)
        _ = try h.shield("db", .pid(4242), session: 2, on: true)
        let (waiter, _) = try h.acquire("db", .session(SessionID(3)), session: 3)
        _ = h.takeEffects()
        h.table.loseCluster(name, now: h.now, effects: &h.effects)
        let reasons = h.takeEffects().compactMap { effect -> RevocationReason? in
            if case .revoked(_, _, _, let reason) = effect { reason } else { nil }
        }
        #expect(reasons == [.lost, .lost])
        #expect(h.table.gate(of: name) == ClusterGate())
        #expect(h.table.clusterDemand(of: name) == .init(mode: .exclusive, holders: 0, admittedWaiters: 1))
        h.table.setGate(name, ClusterGate(allows: .exclusive), fenceBase: 5 << 20, now: h.now, effects: &h.effects)
        #expect(h.grants(h.takeEffects()) == [waiter])
        #expect(h.table.invariantViolations().isEmpty, "\(h.table.invariantViolations())")
    }

    @Test("an admitted waiter stuck behind one that is not (an upgrade goes to the head) does not count as admitted")
    func admittedBehindUpgrade() throws {
        var h = Harness()
        let name = Harness.name("db")
        _ = try h.acquire("db", .session(SessionID(1)), session: 1, mode: .shared, gate: ClusterGate())
        h.table.setGate(name, ClusterGate(allows: .exclusive), fenceBase: 1 << 20, now: h.now, effects: &h.effects)
        _ = try h.acquire("db", .session(SessionID(2)), session: 2, mode: .shared)
        let (writer, _) = try h.acquire("db", .session(SessionID(3)), session: 3)
        h.table.setGate(
            name, ClusterGate(allows: .exclusive, admitted: [writer]), fenceBase: nil, now: h.now, effects: &h.effects)
        #expect(h.table.clusterDemand(of: name).admittedWaiters == 1)
        _ = try h.acquire("db", .session(SessionID(1)), session: 1, mode: .exclusive)
        #expect(h.table.clusterDemand(of: name).admittedWaiters == 0)
        #expect(h.table.invariantViolations().isEmpty, "\(h.table.invariantViolations())")
    }

    @Test("a key whose fences are used up grants nothing more until a new key brings a new base")
    func fencesUsedUp() throws {
        var h = Harness()
        let name = Harness.name("db")
        _ = try h.acquire("db", .session(SessionID(1)), session: 1, gate: ClusterGate())
        h.table.setGate(
            name, ClusterGate(allows: .exclusive), fenceBase: 100, fenceLimit: 101, now: h.now, effects: &h.effects)
        _ = try h.release("db", .session(SessionID(1)), session: 1)
        let (_, second) = try h.acquire("db", .session(SessionID(2)), session: 2)
        guard case .granted(let grant) = second else { Issue.record("\(second)"); return }
        #expect(grant.fence == 101)
        _ = try h.release("db", .session(SessionID(2)), session: 2)
        let (third, outcome) = try h.acquire("db", .session(SessionID(3)), session: 3)
        #expect(isQueued(outcome), "fence 102 is beyond the key's range")
        #expect(h.table.clusterDemand(of: name).fencesLeft == false)
        #expect(h.table.invariantViolations().isEmpty, "\(h.table.invariantViolations())")
        h.table.setGate(
            name, ClusterGate(allows: .exclusive), fenceBase: 200, fenceLimit: 299, now: h.now, effects: &h.effects)
        let granted = h.takeEffects().compactMap { effect -> UInt64? in
            if case .granted(let key, let grant) = effect, key == third { grant.fence } else { nil }
        }
        #expect(granted == [200])
    }
}
