import Synchronization
import Testing

@testable import LockCore

/// Waits (bounded) until `condition` holds, yielding to other tasks meanwhile.
func until(_ condition: () -> Bool) async -> Bool {
    for _ in 0..<20_000 {
        if condition() { return true }
        try? await Task.sleep(for: .microseconds(100))
    }
    return condition()
}

/// A value tasks share in a test.
final class Shared<Value: Sendable>: Sendable {
    let value: Mutex<Value>
    init(_ value: Value) { self.value = Mutex(value) }
    func update(_ body: (inout Value) -> Void) { value.withLock { body(&$0) } }
    var current: Value { value.withLock { $0 } }
}

/// The in-process primitives: a fair async lock and a waiter.
struct AsyncLockTests {
    @Test("waiters get the lock in the order they came")
    func fifo() async throws {
        let lock = AsyncLock()
        try await lock.lock()
        let order = Shared<[Int]>([])
        var tasks: [Task<Void, any Error>] = []
        for index in 0..<8 {
            tasks.append(
                Task {
                    try await lock.lock()
                    order.update { $0.append(index) }
                    lock.unlock()
                })
            #expect(await until { lock.waiterCount == index + 1 })
        }
        lock.unlock()
        for task in tasks { try await task.value }
        #expect(order.current == Array(0..<8))
        #expect(!lock.isLocked)
    }

    @Test("tryLock never barges past a waiter: a release hands the lock over, it is never free between")
    func tryLockIsFair() async throws {
        let lock = AsyncLock()
        #expect(lock.tryLock())
        #expect(!lock.tryLock())
        let waiter = Task {
            try await lock.lock()
            return true
        }
        #expect(await until { lock.waiterCount == 1 })
        lock.unlock()
        #expect(!lock.tryLock(), "the waiter holds it now")
        #expect(try await waiter.value)
        lock.unlock()
        #expect(lock.tryLock())
        lock.unlock()
    }

    @Test("a cancelled waiter leaves the queue at once with CancellationError, and the lock stays usable")
    func cancelWhileWaiting() async throws {
        let lock = AsyncLock()
        try await lock.lock()
        let waiter = Task { try await lock.lock() }
        #expect(await until { lock.waiterCount == 1 })
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        #expect(lock.waiterCount == 0)
        lock.unlock()
        #expect(!lock.isLocked, "no grant went to the cancelled waiter")
        // A task cancelled before it asks does not wait at all.
        try await lock.lock()
        let early = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            try await lock.lock()
        }
        await #expect(throws: CancellationError.self) { try await early.value }
        lock.unlock()
    }

    @Test("a grant racing a cancellation is never lost: the lock ends free with nobody waiting")
    func grantRacingCancel() async throws {
        let lock = AsyncLock()
        for _ in 0..<500 {
            try await lock.lock()
            let waiter = Task {
                do {
                    try await lock.lock()
                } catch {
                    return false
                }
                lock.unlock()
                return true
            }
            _ = await until { lock.waiterCount == 1 }
            async let release: Void = lock.unlock()
            async let cancel: Void = waiter.cancel()
            _ = await (release, cancel)
            _ = await waiter.value
            #expect(await until { !lock.isLocked })
            #expect(lock.waiterCount == 0)
        }
    }

    @Test("withLock releases on return and on throw")
    func withLockReleases() async throws {
        struct Boom: Error {}
        let lock = AsyncLock()
        #expect(try await lock.withLock { 42 } == 42)
        #expect(!lock.isLocked)
        await #expect(throws: Boom.self) { try await lock.withLock { throw Boom() } }
        #expect(!lock.isLocked)
    }

    @Test("notify wakes every task waiting then, and only them")
    func waiter() async throws {
        let event = AsyncWaiter()
        let woken = Shared(0)
        var tasks: [Task<Void, any Error>] = []
        for _ in 0..<5 {
            tasks.append(
                Task {
                    try await event.wait()
                    woken.update { $0 += 1 }
                })
        }
        #expect(await until { event.waiterCount == 5 })
        event.notify()
        for task in tasks { try await task.value }
        #expect(woken.current == 5)
        // A notify with nobody waiting is not remembered.
        event.notify()
        let late = Task { try await event.wait() }
        #expect(await until { event.waiterCount == 1 })
        late.cancel()
        await #expect(throws: CancellationError.self) { try await late.value }
        #expect(event.waiterCount == 0)
    }
}
