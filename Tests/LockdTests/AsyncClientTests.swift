import AsyncLockClient
import Foundation
import LockClient
import LockCore
import LockProtocol
import Synchronization
import Testing

/// LockdClient (the async client) against a real lockd.
@Suite("async client")
struct AsyncClientTests {
    @Test("withLock holds the lock for the body, hands it the fence, and releases it")
    func grant() async throws {
        let daemon = try Daemon()
        let client = LockdClient(socketPath: daemon.socket)
        let other = try daemon.connect()
        let (fence, seenBusy) = try await client.withLock("db") { fence in
            (fence, try other.acquire("db", [("wait", 0)]).code == "busy")
        }
        #expect(fence > 0)
        #expect(seenBusy, "another connection found the lock held during the body")
        #expect(try other.holders("db").isEmpty, "released after the body")
        // Shared holds of two clients coexist.
        let second = LockdClient(socketPath: daemon.socket)
        try await client.withLock("s", mode: .shared) { _ in
            try await second.withLock("s", mode: .shared, wait: .zero) { _ in
                let holders = try other.holders("s")
                #expect(holders.count == 2)
            }
        }
        await client.close()
        await second.close()
    }

    @Test("a wait that runs out is lockd's timeout, a try of a held lock is busy, a bad name is invalid")
    func timeoutAndBusy() async throws {
        let daemon = try Daemon()
        let holder = try daemon.connect()
        #expect(try holder.acquire("t").isOK)
        let client = LockdClient(socketPath: daemon.socket)
        let started = ContinuousClock.now
        await #expect { try await client.withLock("t", wait: .milliseconds(300)) { _ in } } throws: {
            ($0 as? LockdClientError)?.code == .timeout
        }
        #expect(ContinuousClock.now - started >= .milliseconds(290))
        await #expect { try await client.withLock("t", wait: .zero) { _ in } } throws: {
            ($0 as? LockdClientError)?.code == .busy
        }
        await #expect { try await client.withLock("no spaces", wait: .zero) { _ in } } throws: {
            ($0 as? LockdClientError)?.code == .invalid
        }
        let missing = LockdClient(socketPath: daemon.directory + "/none.sock")
        await #expect { try await missing.withLock("t") { _ in } } throws: {
            guard case .connection(let error)? = $0 as? LockdClientError else { return false }
            return error.kind == .unreachable
        }
    }

    @Test("tasks of one client take turns on a name; the same task nests")
    func tasksOfOneClientTakeTurns() async throws {
        let daemon = try Daemon()
        let client = LockdClient(socketPath: daemon.socket)
        let inside = Shared(0)
        let overlaps = Shared(0)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    try await client.withLock("turns") { _ in
                        inside.update { $0 += 1 }
                        if inside.current > 1 { overlaps.update { $0 += 1 } }
                        try await Task.sleep(for: .milliseconds(5))
                        inside.update { $0 -= 1 }
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(overlaps.current == 0)
        // Another task of the same client holding the name: a try is busy, a wait times out.
        let release = AsyncWaiter()
        let holding = Task { try await client.withLock("local") { _ in try await release.wait() } }
        #expect(await until { release.waiterCount == 1 })
        await #expect { try await client.withLock("local", wait: .zero) { _ in } } throws: {
            ($0 as? LockdClientError)?.code == .busy
        }
        await #expect { try await client.withLock("local", wait: .milliseconds(100)) { _ in } } throws: {
            ($0 as? LockdClientError)?.code == .timeout
        }
        let queued = Task { try await client.withLock("local", wait: .seconds(30)) { $0 } }
        release.notify()
        try await holding.value
        #expect(try await queued.value > 0)
        let depth = try await client.withLock("nest") { _ in
            try await client.withLock("nest") { _ in try daemon.connect().holders("nest").first?["count"] }
        }
        #expect(depth == 2)
        // A child task of the section asking for the same name would wait for its parent.
        await #expect(throws: AsyncLockDeadlock(kind: .heldByAncestor)) {
            try await client.withLock("nest") { _ in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await client.withLock("nest") { _ in } }
                    try await group.waitForAll()
                }
            }
        }
    }

    @Test("a caller cancelled while waiting gets CancellationError, and lockd forgets the waiter")
    func cancelledWhileWaiting() async throws {
        let daemon = try Daemon()
        let holder = try daemon.connect()
        #expect(try holder.acquire("w").isOK)
        let client = LockdClient(socketPath: daemon.socket)
        let waiter = Task { try await client.withLock("w") { _ in } }
        let observer = try daemon.connect()
        #expect(await until { waiters(observer, "w") == 1 })
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        #expect(await until { waiters(observer, "w") == 0 })
    }

    @Test("a caller cancelled before its acquire is sent gets CancellationError, and no waiter is left")
    func cancelledBeforeSending() async throws {
        let daemon = try Daemon()
        // A lease, so that an acquire left waiting by mistake is granted once it runs out and the
        // test fails instead of hanging. Whether the answer came at once is read from the lease
        // still being held, not from a clock: under ThreadSanitizer with every test at once, "at
        // once" took 34 s in one CI run.
        let holder = try daemon.connect()
        #expect(try holder.acquire("pre", [("owner", .object([("token", "blocker"), ("ttl", 120)]))]).isOK)
        let client = LockdClient(socketPath: daemon.socket)
        for owner in [LockdClient.Owner.session, .token(ttl: .seconds(30))] {
            let waiter = Task {
                while !Task.isCancelled { await Task.yield() }
                try await client.withLock("pre", owner: owner) { _ in }
            }
            waiter.cancel()
            await #expect(throws: CancellationError.self, "\(owner)") { try await waiter.value }
            #expect(
                try holder.holders("pre").count == 1, "\(owner): answered at once, not once the lock was free")
        }
        let observer = try daemon.connect()
        #expect(waiters(observer, "pre") == 0)
    }

    @Test("a break cancels an unshielded body and withLock says the hold was lost")
    func revokedUnshielded() async throws {
        let daemon = try Daemon()
        let client = LockdClient(socketPath: daemon.socket)
        let breaker = try daemon.connect()
        let sawCancel = Shared(false)
        await #expect {
            try await client.withLock("r") { _ in
                #expect(try breaker.ask("break", [("lock", "r")]).isOK)
                do {
                    try await Task.sleep(for: .seconds(10))
                } catch {
                    sawCancel.update { $0 = true }
                    throw error
                }
            }
        } throws: {
            guard case .holdLost(let lock, let reason)? = $0 as? LockdClientError else { return false }
            return lock == "r" && reason == .revoked(.break)
        }
        #expect(sawCancel.current, "the body was cancelled by the revocation")
    }

    @Test("shielded: a break and the caller's cancellation wait for the body's end, then apply")
    func revokedWhileShielded() async throws {
        let daemon = try Daemon()
        let client = LockdClient(socketPath: daemon.socket)
        let breaker = try daemon.connect()
        let steps = Shared<[String]>([])
        let caller = Task {
            let value = try await client.withLock("sh", shielded: true) { fence in
                steps.update { $0.append("in") }
                try await Task.sleep(for: .milliseconds(500))
                steps.update { $0.append("done, cancelled: \(Task.isCancelled)") }
                return fence
            }
            steps.update { $0.append("returned") }
            try Task.checkCancellation()
            return value
        }
        #expect(await until { steps.current.contains("in") })
        #expect(try breaker.ask("break", [("lock", "sh")])["deferred"]?.intValue == 1)
        caller.cancel()
        await #expect(throws: CancellationError.self) { try await caller.value }
        #expect(steps.current == ["in", "done, cancelled: false", "returned"])
        #expect(try breaker.holders("sh").isEmpty)
    }

    @Test("a token lease is renewed while the body runs: its end moves forward")
    func leaseRenewal() async throws {
        let daemon = try Daemon()
        let client = LockdClient(socketPath: daemon.socket)
        let observer = try daemon.connect()
        // The lease's end is read before and after the first renewal (a third of the ttl). The
        // ttl is long because CI starts every test at once on two cores and has stalled this
        // process for several seconds: a lease must outlive any stall, renewed or not.
        let ends = try await client.withLock("lease", owner: .token("renewed", ttl: .seconds(15))) { _ in
            let before = try observer.holders("lease").first?["expires"]?.string
            try await Task.sleep(for: .seconds(6))
            let after = try observer.holders("lease").first?["expires"]?.string
            return (before, after)
        }
        let before = try #require(ends.0)
        let after = try #require(ends.1)
        #expect(after > before, "renewed: the lease ends later than it did (\(before) → \(after))")
        #expect(try observer.holders("lease").isEmpty)
    }

    @Test("a token lease is renewed from its grant on, even while the caller's executor is busy")
    func renewalFromTheGrant() async throws {
        let daemon = try Daemon()
        let client = LockdClient(socketPath: daemon.socket)
        let holder = try daemon.connect()
        #expect(try holder.acquire("starved").isOK)
        let caller = StarvedCaller()
        let locking = Task { try await caller.lock("starved", client: client, ttl: .seconds(2)) }
        let observer = try daemon.connect()
        // Awaited, not blocked on: with every test at once on two cores, the caller's task needs
        // one of the cooperative pool's threads to send its acquire.
        let waiting = await until {
            let locks = (try? observer.ask("status", [("lock", "starved")]))?["locks"]?.elements
            return locks?.first?["waiters"]?.elements.count == 1
        }
        #expect(waiting, "the acquire waits in lockd's queue")
        // The grant comes while the caller's executor is busy (an application's blocking work),
        // and it stays busy for three ttls after it: only then does the caller's task run again.
        let blocking = Task { await caller.block() }
        #expect(await until { caller.isBlocking })
        #expect(try holder.call(op: "release", [("lock", "starved")]).isOK)
        caller.unblock(after: .seconds(6))
        await blocking.value
        let fence = try await locking.value
        #expect(fence > 0, "the hold outlived the wait for the executor: its lease was renewed meanwhile")
    }

    @Test("a lockd restart: a token hold carries on over a new connection; a session hold is lost")
    func daemonRestart() async throws {
        let daemon = try Daemon()
        let client = LockdClient(socketPath: daemon.socket)
        // A lease long enough for a restart under load (and a CI stall of several seconds).
        let fence = try await client.withLock("durable", owner: .token(ttl: .seconds(15))) { fence in
            daemon.crash()
            try daemon.restart()
            try await Task.sleep(for: .milliseconds(2500))
            let held = try daemon.connect().holders("durable")
            #expect(held.first?["fence"]?.intValue == Int64(fence), "holders \(held); lockd's log:\n\(daemon.log)")
            return fence
        }
        #expect(fence > 0)
        #expect(try daemon.connect().holders("durable").isEmpty, "released over the new connection")
        await #expect {
            try await client.withLock("session") { _ in
                daemon.crash()
                try daemon.restart()
                try await Task.sleep(for: .seconds(10))
            }
        } throws: {
            guard case .holdLost(_, let reason)? = $0 as? LockdClientError else { return false }
            return reason == .connectionLost
        }
        // The next call opens a new connection by itself.
        #expect(try await client.withLock("after") { $0 } > 0)
    }
}

/// How many wait for `lock` (0 when lockd does not list it).
func waiters(_ connection: LockConnection, _ lock: String) -> Int {
    guard let answer = try? connection.ask("status", [("lock", .string(lock))]),
        case .array(let locks)? = answer["locks"], let first = locks.first,
        case .array(let waiters)? = first["waiters"]
    else { return 0 }
    return waiters.count
}

/// Waits (bounded) until `condition` holds, yielding meanwhile. The bound is generous: under TSan,
/// with every test at once on two cores, a task can wait tens of seconds for a pool thread.
func until(timeout: Duration = .seconds(120), _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return condition()
}

/// A value tasks share in a test.
final class Shared<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func update(_ body: (inout Value) -> Void) { lock.withLock { body(&value) } }
    var current: Value { lock.withLock { value } }
}

/// An actor on a thread of its own, so that a test can keep it busy without starving the
/// cooperative pool that every other test shares.
actor StarvedCaller {
    private let executor = ThreadExecutor()
    /// Whether ``block()`` runs, and when it is to end (`nil`: not said yet).
    private let blocking = Mutex<(running: Bool, end: ContinuousClock.Instant?)>((false, nil))

    nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    nonisolated var isBlocking: Bool { blocking.withLock { $0.running } }

    /// Lets ``block()`` end `delay` from now.
    nonisolated func unblock(after delay: Duration) { blocking.withLock { $0.end = .now + delay } }

    func lock(_ name: String, client: LockdClient, ttl: Duration) async throws -> UInt64 {
        try await client.withLock(name, owner: .token(ttl: ttl)) { $0 }
    }

    /// Keeps this actor's executor busy (a blocking call, as applications make) until the time
    /// ``unblock(after:)`` sets, or two minutes.
    func block() {
        let limit = ContinuousClock.now + .seconds(120)
        blocking.withLock { $0.running = true }
        while ContinuousClock.now < min(blocking.withLock { $0.end } ?? limit, limit) { usleep(20_000) }
        blocking.withLock { $0.running = false }
    }
}

/// A serial executor that runs its jobs on one dedicated thread.
final class ThreadExecutor: SerialExecutor, @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []

    init() {
        Thread { [self] in run() }.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    private func run() {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let job = jobs.removeFirst()
            condition.unlock()
            job.runSynchronously(on: asUnownedSerialExecutor())
        }
    }
}
