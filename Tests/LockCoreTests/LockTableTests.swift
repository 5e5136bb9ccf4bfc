import Testing

@testable import LockCore

/// Drives the engine directly: no sockets, no sleeps; time is a number the test moves.
struct Harness {
    var table = LockTable()
    var effects: [LockEffect] = []
    var now = Moment(uptimeNanos: 1_000_000_000, unixTime: 1_700_000_000)
    var nextRequest = 0

    static func name(_ raw: String) -> LockName { LockName(raw)! }

    func requester(_ session: UInt64, uid: UInt32 = 1000) -> Requester {
        Requester(session: SessionID(session), identity: ClientIdentity(pid: Int32(100 + session), uid: uid, gid: uid))
    }

    mutating func key(_ session: UInt64) -> RequestKey {
        nextRequest += 1
        return RequestKey(session: SessionID(session), tag: String(nextRequest))
    }

    mutating func acquire(
        _ lock: String, _ owner: LockOwner, session: UInt64, mode: LockMode = .exclusive, wait: Double? = nil,
        ttl: Double? = nil, uid: UInt32 = 1000, gate: ClusterGate? = nil
    ) throws(LockError) -> (RequestKey, AcquireOutcome) {
        let key = key(session)
        let outcome = try table.acquire(
            Self.name(lock), mode: mode, owner: owner, wait: wait, ttl: ttl, request: key,
            requester: requester(session, uid: uid), now: now, effects: &effects, gate: gate)
        return (key, outcome)
    }

    mutating func release(_ lock: String, _ owner: LockOwner, session: UInt64, all: Bool = false, uid: UInt32 = 1000)
        throws(LockError) -> Int
    {
        try table.release(
            Self.name(lock), owner: owner, all: all, requester: requester(session, uid: uid), now: now,
            effects: &effects)
    }

    mutating func shield(_ lock: String, _ owner: LockOwner, session: UInt64, on: Bool) throws(LockError) -> Int {
        try table.shield(
            Self.name(lock), owner: owner, on: on, requester: requester(session), now: now, effects: &effects)
    }

    mutating func advance(_ seconds: Double) { now = now.adding(seconds: seconds) }

    mutating func takeEffects() -> [LockEffect] {
        defer { effects = [] }
        return effects
    }

    func grants(_ effects: [LockEffect]) -> [RequestKey] {
        effects.compactMap { if case .granted(let key, _) = $0 { key } else { nil } }
    }

    func failures(_ effects: [LockEffect]) -> [(RequestKey, LockError.Code)] {
        effects.compactMap { if case .failed(let key, let error) = $0 { (key, error.code) } else { nil } }
    }
}

let a = LockOwner.session(SessionID(1))
let b = LockOwner.session(SessionID(2))
let c = LockOwner.session(SessionID(3))

@Suite("lock table")
struct LockTableTests {
    @Test("lock names follow the character and length rule")
    func names() {
        #expect(LockName("db.migrate:v2/x@host+1-a_b") != nil)
        #expect(LockName("") == nil)
        #expect(LockName("has space") == nil)
        #expect(LockName("é") == nil)
        #expect(LockName(String(repeating: "a", count: 255)) != nil)
        #expect(LockName(String(repeating: "a", count: 256)) == nil)
    }

    @Test("acquire is re-entrant for the same owner and free at zero")
    func reentrance() throws {
        var h = Harness()
        let (_, first) = try h.acquire("x", a, session: 1)
        let (_, second) = try h.acquire("x", a, session: 1)
        guard case .granted(let g1) = first, case .granted(let g2) = second else {
            Issue.record("expected grants")
            return
        }
        #expect(g1.count == 1 && g2.count == 2 && g1.fence == g2.fence)
        #expect(try h.release("x", a, session: 1) == 1)
        #expect(throws: LockError.self) { try h.acquire("x", b, session: 2, wait: 0) }
        #expect(try h.release("x", a, session: 1) == 0)
        #expect(h.table.status().isEmpty)
        #expect(throws: LockError(.notHeld, "session 1 does not hold lock \"x\"")) {
            try h.release("x", a, session: 1)
        }
    }

    @Test("busy on no-wait, FIFO hand-off, fences strictly increase")
    func fifo() throws {
        var h = Harness()
        _ = try h.acquire("x", a, session: 1)
        do {
            _ = try h.acquire("x", b, session: 2, wait: 0)
            Issue.record("expected busy")
        } catch { #expect(error.code == .busy) }
        let (kb, ob) = try h.acquire("x", b, session: 2)
        let (kc, _) = try h.acquire("x", c, session: 3)
        #expect(ob == .queued(deadlineNanos: nil))
        _ = try h.release("x", a, session: 1)
        #expect(h.grants(h.takeEffects()) == [kb])
        _ = try h.release("x", b, session: 2)
        let effects = h.takeEffects()
        #expect(h.grants(effects) == [kc])
        let fences = effects.compactMap { if case .granted(_, let g) = $0 { g.fence } else { nil } }
        #expect(fences == [3])
    }

    @Test("shared holders coexist; a shared request behind a waiting exclusive one waits")
    func sharedAndWriterPreference() throws {
        var h = Harness()
        _ = try h.acquire("x", a, session: 1, mode: .shared)
        let (_, ob) = try h.acquire("x", b, session: 2, mode: .shared)
        guard case .granted = ob else { Issue.record("shared should coexist"); return }
        let (kc, oc) = try h.acquire("x", c, session: 3)
        #expect(oc == .queued(deadlineNanos: nil))
        let d = LockOwner.session(SessionID(4))
        let e = LockOwner.session(SessionID(5))
        let (kd, od) = try h.acquire("x", d, session: 4, mode: .shared)
        let (ke, _) = try h.acquire("x", e, session: 5, mode: .shared)
        #expect(od == .queued(deadlineNanos: nil))
        _ = try h.release("x", a, session: 1)
        _ = try h.release("x", b, session: 2)
        #expect(h.grants(h.takeEffects()) == [kc])
        _ = try h.release("x", c, session: 3)
        #expect(h.grants(h.takeEffects()) == [kd, ke])
    }

    @Test("an upgrade is granted at once for a sole holder and waits at the head otherwise")
    func upgrade() throws {
        var h = Harness()
        _ = try h.acquire("x", a, session: 1, mode: .shared)
        let (_, up) = try h.acquire("x", a, session: 1, mode: .exclusive)
        #expect(up == .granted(Grant(lock: Harness.name("x"), mode: .exclusive, count: 2, fence: 1)))
        #expect(try h.release("x", a, session: 1) == 1)
        #expect(h.table.status()[0].mode == .exclusive)
        _ = try h.release("x", a, session: 1)

        _ = try h.acquire("x", a, session: 1, mode: .shared)
        _ = try h.acquire("x", b, session: 2, mode: .shared)
        let (kc, _) = try h.acquire("x", c, session: 3)
        let (ka, oa) = try h.acquire("x", a, session: 1, mode: .exclusive)
        #expect(oa == .queued(deadlineNanos: nil))
        #expect(h.table.status()[0].waiters.map(\.owner) == [a, c])
        do {
            _ = try h.acquire("x", b, session: 2, mode: .exclusive)
            Issue.record("second upgrader must be a deadlock")
        } catch { #expect(error.code == .deadlock) }
        _ = try h.release("x", b, session: 2)
        let effects = h.takeEffects()
        #expect(h.grants(effects) == [ka])
        #expect(h.table.status()[0].holders[0].count == 2)
        _ = try h.release("x", a, session: 1, all: true)
        #expect(h.grants(h.takeEffects()) == [kc])
    }

    @Test("a request that would close a wait-for cycle is refused with deadlock")
    func deadlock() throws {
        var h = Harness()
        _ = try h.acquire("x", a, session: 1)
        _ = try h.acquire("y", b, session: 2)
        _ = try h.acquire("y", a, session: 1)
        do {
            _ = try h.acquire("x", b, session: 2)
            Issue.record("expected deadlock")
        } catch { #expect(error.code == .deadlock) }
        // Through a queued waiter: c waits behind a for y; b asking for x (held by c) closes a -> b -> ... no.
        #expect(h.table.waiterCount == 1)
    }

    @Test("a cycle through a waiter ahead in the queue is detected")
    func deadlockThroughQueue() throws {
        var h = Harness()
        _ = try h.acquire("x", a, session: 1)
        _ = try h.acquire("z", c, session: 3)
        _ = try h.acquire("x", b, session: 2)  // b waits for a
        _ = try h.acquire("x", c, session: 3)  // c waits for a and b (ahead)
        _ = try h.release("x", a, session: 1)  // b now holds x, c waits for b
        _ = h.takeEffects()
        do {
            _ = try h.acquire("z", b, session: 2)  // b would wait for c, which waits for b
            Issue.record("expected deadlock")
        } catch { #expect(error.code == .deadlock) }
    }

    @Test("an owner that holds nothing still closes a cycle when others queue behind it elsewhere")
    func deadlockThroughAnOwnerHoldingNothing() throws {
        var h = Harness()
        _ = try h.acquire("x", b, session: 2)
        _ = try h.acquire("y", c, session: 3)
        _ = try h.acquire("y", a, session: 1)  // a holds nothing and waits first for y
        _ = try h.acquire("y", b, session: 2)  // b (holding x) waits behind a
        do {
            _ = try h.acquire("x", a, session: 1)  // a would wait for b, which waits for a
            Issue.record("expected deadlock")
        } catch { #expect(error.code == .deadlock) }
        // A fresh owner that holds nothing and waits for nothing else just queues.
        let (_, outcome) = try h.acquire("x", LockOwner.session(SessionID(9)), session: 9)
        guard case .queued = outcome else {
            Issue.record("expected the fresh owner to queue, got \(outcome)")
            return
        }
    }

    @Test("waits time out, cancel answers cancelled and lets others in")
    func timeoutAndCancel() throws {
        var h = Harness()
        _ = try h.acquire("x", a, session: 1, mode: .shared)
        let (kb, ob) = try h.acquire("x", b, session: 2, wait: 1.5)
        let (kc, _) = try h.acquire("x", c, session: 3, mode: .shared)
        guard case .queued(let deadline?) = ob else { Issue.record("expected a deadline"); return }
        h.table.timeOut(kb, now: h.now, effects: &h.effects)
        #expect(h.takeEffects().isEmpty)
        h.advance(1.5)
        #expect(h.now.uptimeNanos == deadline)
        h.table.timeOut(kb, now: h.now, effects: &h.effects)
        let effects = h.takeEffects()
        #expect(h.failures(effects).map(\.1) == [.timeout])
        #expect(h.grants(effects) == [kc])
        let (kd, _) = try h.acquire("x", b, session: 2)
        #expect(h.table.cancel(kd, now: h.now, effects: &h.effects))
        #expect(h.failures(h.takeEffects()).map(\.1) == [.cancelled])
        #expect(!h.table.cancel(kd, now: h.now, effects: &h.effects))
    }

    @Test("a shield defers break until it closes; then the holder is told")
    func shieldDefersBreak() throws {
        var h = Harness()
        _ = try h.acquire("x", a, session: 1)
        let (kb, _) = try h.acquire("x", b, session: 2)
        #expect(try h.shield("x", a, session: 1, on: true) == 1)
        #expect(try h.shield("x", a, session: 1, on: true) == 2)
        let result = try h.table.breakLock(
            Harness.name("x"), requester: h.requester(9), now: h.now, effects: &h.effects)
        #expect(result.released == 0 && result.deferred == 1)
        #expect(h.takeEffects().isEmpty)
        #expect(try h.shield("x", a, session: 1, on: false) == 1)
        #expect(h.takeEffects().isEmpty)
        #expect(try h.shield("x", a, session: 1, on: false) == 0)
        let effects = h.takeEffects()
        #expect(effects.contains(.revoked(session: SessionID(1), lock: Harness.name("x"), owner: a, reason: .break)))
        #expect(h.grants(effects) == [kb])
        do {
            _ = try h.release("x", a, session: 1)
            Issue.record("a revoked hold is not held")
        } catch { #expect(error.code == .notHeld) }
        do {
            _ = try h.shield("x", b, session: 2, on: false)
            Issue.record("shield off at depth 0 is invalid")
        } catch { #expect(error.code == .invalid) }
    }

    @Test("token leases expire together, a shield defers expiry and renew cancels it")
    func leases() throws {
        var h = Harness()
        let t = LockOwner.token("job")
        _ = try h.acquire("x", t, session: 1, ttl: 10)
        _ = try h.acquire("y", t, session: 1, ttl: 10)
        h.table.sessionClosed(SessionID(1), now: h.now, effects: &h.effects)
        #expect(h.table.heldLockCount == 2, "token holds outlive their connection")
        #expect(try h.shield("y", t, session: 2, on: true) == 1)
        h.advance(10)
        h.table.expireLease("job", now: h.now, effects: &h.effects)
        let effects = h.takeEffects()
        #expect(effects.contains(.revoked(session: SessionID(1), lock: Harness.name("x"), owner: t, reason: .expired)))
        #expect(h.table.status().map(\.name.rawValue) == ["y"])
        let expires = try h.table.renew(
            token: "job", ttl: 5, requester: h.requester(2), now: h.now, effects: &h.effects)
        #expect(expires == h.now.unixTime + 5)
        #expect(try h.shield("y", t, session: 2, on: false) == 0)
        #expect(h.table.status().map(\.name.rawValue) == ["y"], "renew cancelled the deferred expiry")
        do {
            _ = try h.table.renew(token: "nope", ttl: 5, requester: h.requester(2), now: h.now, effects: &h.effects)
            Issue.record("unknown token")
        } catch { #expect(error.code == .notHeld) }
    }

    @Test("an owner that dies loses holds and waits, shielded or not")
    func ownerDeath() throws {
        var h = Harness()
        let p = LockOwner.pid(4242)
        _ = try h.acquire("x", p, session: 1)
        _ = try h.shield("x", p, session: 1, on: true)
        _ = try h.acquire("y", b, session: 2)
        let (kp, _) = try h.acquire("y", p, session: 1)
        let (kc, _) = try h.acquire("x", c, session: 3)
        do {
            _ = try h.acquire("x", b, session: 2)
            Issue.record("b holds y, which p waits for: b waiting for x (held by p) is a deadlock")
        } catch { #expect(error.code == .deadlock) }
        h.table.ownerGone(p, now: h.now, effects: &h.effects)
        let effects = h.takeEffects()
        #expect(h.failures(effects).map(\.0) == [kp])
        #expect(h.grants(effects) == [kc])
        #expect(effects.contains(.ownerIdle(p)))
        #expect(!h.table.isActive(p))
    }

    @Test("only the same uid or root may release another client's hold")
    func permissions() throws {
        var h = Harness()
        let p = LockOwner.pid(4242)
        _ = try h.acquire("x", p, session: 1, uid: 1000)
        do {
            _ = try h.release("x", p, session: 2, uid: 1001)
            Issue.record("expected denied")
        } catch { #expect(error.code == .denied) }
        #expect(try h.release("x", p, session: 2, uid: 0) == 0)
    }

    @Test("shutdown answers waiters and refuses new acquires")
    func shutdown() throws {
        var h = Harness()
        _ = try h.acquire("x", a, session: 1)
        let (kb, _) = try h.acquire("x", b, session: 2)
        h.table.beginShutdown(now: h.now, effects: &h.effects)
        #expect(h.failures(h.takeEffects()).map(\.1) == [.shuttingDown])
        _ = kb
        do {
            _ = try h.acquire("y", c, session: 3)
            Issue.record("expected shutting_down")
        } catch { #expect(error.code == .shuttingDown) }
        #expect(try h.release("x", a, session: 1) == 0)
    }
}

@Suite("the invariant checker")
struct InvariantCheckerTests {
    @Test("a sound table has no violations; a broken one is reported")
    func reports() throws {
        var harness = Harness()
        _ = try harness.acquire("x", .session(SessionID(1)), session: 1)
        _ = try harness.acquire("x", .session(SessionID(2)), session: 2, wait: 5)
        #expect(harness.table.invariantViolations().isEmpty)

        var twoExclusive = harness.table
        let name = Harness.name("x")
        var second = twoExclusive.locks[name]!.holders[0]
        second.owner = .session(SessionID(9))
        twoExclusive.locks[name]!.holders.append(second)
        #expect(twoExclusive.invariantViolations().contains { $0.contains("exclusive hold beside") })

        var lostWakeUp = harness.table
        lostWakeUp.locks[name]!.holders.removeAll()
        #expect(lostWakeUp.invariantViolations().contains { $0.contains("could be granted") })

        var unindexed = harness.table
        unindexed.pending.removeAll()
        #expect(!unindexed.invariantViolations().isEmpty)
    }
}
