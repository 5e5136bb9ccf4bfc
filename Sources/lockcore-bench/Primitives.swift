import LockCore
import Synchronization

/// Median nanoseconds per operation (or operations per second for hand-offs), by step name.
typealias Figures = [String: Double]

/// The in-process steps, each as the seed's script measures its counterpart: explicit
/// lock()/unlock() pairs (the seed's `await acquire()` / `release()`), withLock for the closure
/// form, 16 tasks contending with a yield inside the hold, and an empty shield.
@concurrent
func measurePrimitives(operations: Int, rounds: Int, seconds: Double) async throws -> Figures {
    var samples: [String: [Double]] = [:]
    for _ in 0..<rounds {
        let plain = AsyncLock()
        let reentrant = ReentrantAsyncLock()
        samples["asynclock_pair_ns", default: []].append(
            try await perOperation(operations) {
                try await plain.lock()
                plain.unlock()
            })
        samples["uncontended_ns", default: []].append(
            try await perOperation(operations) {
                try await reentrant.lock()
                reentrant.unlock()
            })
        try await reentrant.lock()
        samples["reentrant_ns", default: []].append(
            try await perOperation(operations) {
                try await reentrant.lock()
                reentrant.unlock()
            })
        samples["reentrant_withlock_ns", default: []].append(
            try await perOperation(operations) { try await reentrant.withLock {} })
        reentrant.unlock()
        samples["uncontended_withlock_ns", default: []].append(
            try await perOperation(operations) { try await reentrant.withLock {} })
        samples["handoffs_per_s", default: []].append(try await handoffs(tasks: 16, seconds: seconds))
        samples["shield_ns", default: []].append(try await perOperation(operations / 10) { await withShield {} })
        // What withShield would cost on a plain Task (the scheduler trip Task.immediate avoids).
        samples["shield_plain_task_ns", default: []].append(
            try await perOperation(operations / 100) { await Task {}.value })
        let onActor = ShieldOnActor()
        samples["shield_on_actor_ns", default: []].append(await onActor.shields(operations / 10))
        samples["shield_plain_task_on_actor_ns", default: []].append(await onActor.plainTasks(operations / 100))
    }
    return samples.mapValues(median)
}

@inline(__always)
private func perOperation(_ count: Int, _ operation: () async throws -> Void) async throws -> Double {
    for _ in 0..<min(count / 10, 10_000) { try await operation() }
    let start = nanoseconds()
    for _ in 0..<count { try await operation() }
    return Double(nanoseconds() - start) / Double(count)
}

/// Acquisitions per second by `tasks` tasks contending for one ReentrantAsyncLock, each yielding
/// once while it holds it (the seed's script sleeps 0 there).
private func handoffs(tasks: Int, seconds: Double) async throws -> Double {
    let lock = ReentrantAsyncLock()
    let shared = Contention()
    return try await withThrowingTaskGroup(of: Void.self) { group in
        for _ in 0..<tasks {
            group.addTask {
                while !shared.stop.load(ordering: .relaxed) {
                    try await lock.lock()
                    shared.count.add(1, ordering: .relaxed)
                    await Task.yield()
                    lock.unlock()
                }
            }
        }
        try await Task.sleep(for: .milliseconds(50))
        let before = shared.count.load(ordering: .relaxed)
        let start = nanoseconds()
        try await Task.sleep(for: .seconds(seconds))
        let rate = Double(shared.count.load(ordering: .relaxed) - before) / (Double(nanoseconds() - start) / 1e9)
        shared.stop.store(true, ordering: .relaxed)
        try await group.waitForAll()
        return rate
    }
}

/// What the contending tasks share.
private final class Contention: Sendable {
    let count = Atomic<Int>(0)
    let stop = Atomic<Bool>(false)
}

/// Shields entered on an actor: `Task.immediate` starts the section on the actor at once, where a
/// plain `Task` is queued behind the caller and runs once it suspends.
private actor ShieldOnActor {
    var entered = 0

    func shields(_ count: Int) async -> Double {
        let start = nanoseconds()
        for _ in 0..<count { await withShield { entered += 1 } }
        return Double(nanoseconds() - start) / Double(count)
    }

    func plainTasks(_ count: Int) async -> Double {
        let start = nanoseconds()
        for _ in 0..<count { await Task { entered += 1 }.value }
        return Double(nanoseconds() - start) / Double(count)
    }
}
