import Testing

@testable import LockCore

/// Every value JSON or `Double` can carry, and the edges of every range lockd converts into.
let extremeSeconds: [Double] = [
    0, -0.0, .leastNonzeroMagnitude, .leastNormalMagnitude, 1e-9, 0.5e-9, 1e-3, 1, 30, 86_400,
    Seconds.ceiling.nextDown, Seconds.ceiling, Seconds.ceiling.nextUp, 1e16, 1e18, 9.3e18, 1e19, 1e300,
    .greatestFiniteMagnitude, .infinity, -.infinity, .nan, -1, -1e300, -.leastNonzeroMagnitude,
]

@Suite("durations at their edges")
struct SecondsTests {
    @Test("clamped stays within 0...ceiling and keeps what is inside", arguments: extremeSeconds)
    func clamped(_ seconds: Double) {
        let value = Seconds.clamped(seconds)
        #expect(value >= 0 && value <= Seconds.ceiling)
        if seconds >= 0, seconds <= Seconds.ceiling { #expect(value == seconds) }
        if seconds > Seconds.ceiling { #expect(value == Seconds.ceiling) }
        if !(seconds > 0) { #expect(value == 0) }
    }

    @Test("nanoseconds fit Int64, are monotonic, and are exact for whole seconds", arguments: extremeSeconds)
    func nanoseconds(_ seconds: Double) {
        let nanos = Seconds.nanoseconds(seconds)
        #expect(nanos <= UInt64(Int64.max))
        #expect(Int64(nanos) == Seconds.signedNanoseconds(seconds))
        if seconds.isFinite, seconds == seconds.rounded(), seconds >= 0, seconds <= 1e9 {
            #expect(nanos == UInt64(seconds) * 1_000_000_000)
        }
        #expect(Seconds.nanoseconds(seconds.nextUp) >= nanos || seconds.isNaN)
    }

    @Test(
        "a deadline never overflows and never lies before its start",
        arguments: [0, 1, 1_000_000_000, UInt64(Int64.max) - 5, UInt64(Int64.max), UInt64.max - 1, UInt64.max])
    func deadline(_ uptime: UInt64) {
        for seconds in extremeSeconds {
            let deadline = Seconds.deadline(after: seconds, from: uptime)
            #expect(deadline <= UInt64(Int64.max))
            #expect(deadline >= min(uptime, UInt64(Int64.max)))
        }
    }

    @Test("a moment moved by any duration stays finite and ordered", arguments: extremeSeconds)
    func moment(_ seconds: Double) {
        let now = Moment(uptimeNanos: 5_000_000_000, unixTime: 1_796_000_000)
        let later = now.adding(seconds: seconds)
        #expect(later.uptimeNanos >= now.uptimeNanos)
        #expect(later.unixTime.isFinite && later.unixTime >= now.unixTime)
        #expect(later.unixTime <= now.unixTime + Seconds.ceiling)
    }

    @Test("formatSeconds takes any value", arguments: extremeSeconds)
    func format(_ seconds: Double) {
        #expect(formatSeconds(seconds).hasSuffix("s"))
    }
}

@Suite("the engine with absurd numbers")
struct AbsurdNumberTests {
    @Test(
        "a token lease of any length is clamped to the ceiling, and its expiry stays in range",
        arguments: [
            1e16, 1e300, Double.greatestFiniteMagnitude, Seconds.ceiling.nextUp, .leastNonzeroMagnitude,
        ])
    func lease(_ ttl: Double) throws {
        var harness = Harness()
        _ = try harness.acquire("evil", .token("evil"), session: 1, ttl: ttl)
        let holder = try #require(harness.table.status(of: Harness.name("evil")).first?.holders.first)
        let expires = try #require(holder.expires)
        #expect(expires <= harness.now.unixTime + Seconds.ceiling)
        let renewed = try harness.table.renew(
            token: "evil", ttl: ttl, requester: harness.requester(1), now: harness.now, effects: &harness.effects)
        #expect(renewed <= harness.now.unixTime + Seconds.ceiling)
        for case .leaseDeadline(_, let deadline) in harness.effects { #expect(deadline <= UInt64(Int64.max)) }
    }

    @Test("a wait of any length gives a deadline NIO can hold", arguments: [1e16, 1e300, .greatestFiniteMagnitude])
    func wait(_ wait: Double) throws {
        var harness = Harness()
        _ = try harness.acquire("w", .session(SessionID(1)), session: 1)
        let (_, outcome) = try harness.acquire("w", .session(SessionID(2)), session: 2, wait: wait)
        guard case .queued(let deadline?) = outcome else {
            Issue.record("expected a queued acquire with a deadline, got \(outcome)")
            return
        }
        #expect(deadline <= UInt64(Int64.max))
    }

    @Test("re-entrance stops at the maximum count with `limit`, the hold unchanged")
    func countLimit() throws {
        var harness = Harness()
        let hold = DurableHold(
            lock: Harness.name("deep"), owner: .pid(42), mode: .exclusive, count: LockTable.maximumCount, fence: 7,
            since: 1, shieldDepth: 0, pendingRevocation: nil, creator: ClientIdentity(pid: 42, uid: 1000, gid: 1000),
            lease: nil)
        #expect(harness.table.restore(hold, now: harness.now, effects: &harness.effects))
        #expect(throws: LockError.self) { _ = try harness.acquire("deep", .pid(42), session: 1) }
        #expect(harness.table.status(of: Harness.name("deep")).first?.holders.first?.count == LockTable.maximumCount)
        var tooDeep = hold
        tooDeep.lock = Harness.name("deeper")
        tooDeep.count = LockTable.maximumCount + 1
        #expect(!harness.table.restore(tooDeep, now: harness.now, effects: &harness.effects))
    }

    @Test("at the largest fence new holds are refused with `limit`, and re-entrance still works")
    func fenceLimit() throws {
        var harness = Harness()
        harness.table.raiseFence(to: .max)
        #expect(harness.table.currentFence == LockTable.maximumFence)
        do {
            _ = try harness.acquire("f", .session(SessionID(1)), session: 1)
            Issue.record("granted a fence past the maximum")
        } catch {
            #expect(error.code == .limit)
        }
    }

    @Test("restore refuses a second exclusive holder, as only a damaged journal can claim one")
    func conflictingRestore() {
        var harness = Harness()
        func hold(_ pid: Int32, _ mode: LockMode) -> DurableHold {
            DurableHold(
                lock: Harness.name("x"), owner: .pid(pid), mode: mode, count: 1, fence: UInt64(pid), since: 1,
                shieldDepth: 0, pendingRevocation: nil, creator: ClientIdentity(pid: pid, uid: 0, gid: 0), lease: nil)
        }
        #expect(harness.table.restore(hold(10, .exclusive), now: harness.now, effects: &harness.effects))
        #expect(!harness.table.restore(hold(11, .exclusive), now: harness.now, effects: &harness.effects))
        #expect(!harness.table.restore(hold(12, .shared), now: harness.now, effects: &harness.effects))
        #expect(harness.table.status(of: Harness.name("x")).first?.holders.count == 1)
    }
}
