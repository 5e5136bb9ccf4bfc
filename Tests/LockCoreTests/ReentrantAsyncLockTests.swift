import Testing

@testable import LockCore

@Suite("ReentrantAsyncLock and deadlock detection")
struct ReentrantAsyncLockTests {
    @Test("the holder re-enters without waiting; the lock is released by the last unlock only")
    func reentranceCounts() async throws {
        let lock = ReentrantAsyncLock()
        try await lock.lock()
        try await lock.lock()
        #expect(lock.tryLock(), "the holder's tryLock always succeeds")
        #expect(lock.holdCount == 3)
        #expect(lock.isHeldByCurrentTask)
        let other = Task {
            try await lock.lock()
            defer { lock.unlock() }
            return lock.holdCount
        }
        #expect(await until { lock.waiterCount == 1 })
        lock.unlock()
        lock.unlock()
        #expect(lock.isLocked && lock.waiterCount == 1, "one level is still held")
        lock.unlock()
        #expect(try await other.value == 1, "the waiter got a fresh hold of one level")
        #expect(!lock.isLocked)
    }

    @Test("FIFO among other tasks, and tryLock never barges past them")
    func fifoAndFairTryLock() async throws {
        let lock = ReentrantAsyncLock()
        try await lock.lock()
        let order = Shared<[Int]>([])
        var tasks: [Task<Void, any Error>] = []
        for index in 0..<6 {
            tasks.append(
                Task {
                    try await lock.withLock { order.update { $0.append(index) } }
                })
            #expect(await until { lock.waiterCount == index + 1 })
        }
        let outsider = Task { lock.tryLock() }
        #expect(await outsider.value == false)
        lock.unlock()
        for task in tasks { try await task.value }
        #expect(order.current == Array(0..<6))
        #expect(!lock.isLocked)
    }

    @Test("withLock nests, counts levels and releases on every path")
    func withLockNests() async throws {
        struct Boom: Error {}
        let lock = ReentrantAsyncLock()
        let depth = try await lock.withLock { try await lock.withLock { lock.holdCount } }
        #expect(depth == 2)
        #expect(!lock.isLocked)
        await #expect(throws: Boom.self) {
            try await lock.withLock { try await lock.withLock { throw Boom() } }
        }
        #expect(!lock.isLocked)
    }

    @Test("releasing from a task that does not hold the lock stops the program with a clear message")
    func releaseByNonOwner() async {
        await #expect(processExitsWith: .failure) {
            let lock = ReentrantAsyncLock()
            try await lock.lock()
            await Task.detached { lock.unlock() }.value
        }
        await #expect(processExitsWith: .failure) {
            ReentrantAsyncLock().unlock()
        }
    }

    @Test("cancellation while waiting: out of the queue at once, and a racing grant is never leaked")
    func cancellationRaces() async throws {
        let lock = ReentrantAsyncLock()
        for round in 0..<300 {
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
            if round.isMultiple(of: 2) {
                // The holder releases while another task cancels the waiter.
                async let cancel: Void = waiter.cancel()
                lock.unlock()
                await cancel
            } else {
                waiter.cancel()
                #expect(await until { lock.waiterCount == 0 }, "the cancelled waiter left at once")
                lock.unlock()
            }
            _ = await waiter.value
            #expect(await until { !lock.isLocked })
            #expect(lock.waiterCount == 0)
        }
    }

    @Test("a child task asking for the lock its parent holds in withLock throws instead of hanging")
    func ancestorHoldsStructured() async throws {
        let lock = ReentrantAsyncLock()
        try await lock.withLock {
            async let child: Void = lock.withLock {}
            var childError: AsyncLockDeadlock?
            do { try await child } catch let error as AsyncLockDeadlock { childError = error }
            #expect(childError?.kind == .heldByAncestor)
            await withThrowingTaskGroup(of: Void.self) { group in
                // A grandchild, with the explicit form: the record is inherited all the way down.
                group.addTask {
                    async let grandchild: Void = lock.lock()
                    try await grandchild
                }
                await #expect(throws: AsyncLockDeadlock(kind: .heldByAncestor)) { try await group.next() }
            }
        }
        #expect(!lock.isLocked)
    }

    @Test("AsyncLock taken again by the same task inside withLock throws instead of hanging")
    func sameTaskOnPlainLock() async throws {
        let lock = AsyncLock()
        let other = AsyncLock()
        try await lock.withLock {
            try await other.withLock {
                await #expect(throws: AsyncLockDeadlock(kind: .heldByThisTask)) { try await lock.lock() }
            }
        }
        #expect(!lock.isLocked && !other.isLocked)
    }

    @Test("an unstructured Task made in the scope: refused while the scope lasts, waits after; detached always waits")
    func unstructuredTasks() async throws {
        let lock = ReentrantAsyncLock()
        let gate = AsyncWaiter()
        var late: Task<Int, any Error>?
        var detached: Task<Int, any Error>?
        try await lock.withLock {
            let early = Task { try await lock.withLock { 1 } }
            await #expect(throws: AsyncLockDeadlock(kind: .heldByAncestor)) { try await early.value }
            late = Task {
                try await gate.wait()
                return try await lock.withLock { 2 }
            }
            detached = Task.detached { try await lock.withLock { 3 } }
            #expect(await until { lock.waiterCount == 1 && gate.waiterCount == 1 })
        }
        #expect(try await detached?.value == 3)
        try await lock.withLock {
            gate.notify()
            // The inherited record names the first scope's hold, which is over: this one is new.
            #expect(await until { lock.waiterCount == 1 })
        }
        #expect(try await late?.value == 2)
    }
}
