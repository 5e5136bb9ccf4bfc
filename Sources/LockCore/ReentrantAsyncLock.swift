import Synchronization

/// A fair lock that the task holding it may take again: each ``lock()`` by the holder adds a
/// level, each ``unlock()`` removes one, and the last one releases (the seed's `RLock`).
///
/// ```swift
/// let registry = ReentrantAsyncLock()
/// try await registry.withLock {
///     try await registry.withLock { … }   // the same task: one level deeper, no wait
/// }
/// ```
///
/// Everything ``AsyncLock`` promises holds here too: FIFO waiters, a ``tryLock()`` that never
/// barges past them (but always succeeds for the holder), cancellation that leaves the queue at
/// once without losing a grant, and ``AsyncLockDeadlock`` instead of a hang when a child task of a
/// ``withLock(_:)`` scope asks for the lock its ancestor holds.
///
/// The hold belongs to the task that took it. Releasing from another task is a programming
/// error that stops the program with a message saying so, as does releasing a free lock.
/// Re-entrance is per task, not per task tree: a child task is another task, and waits (or,
/// inside the holder's ``withLock(_:)``, gets ``AsyncLockDeadlock``). A task that ends while it
/// holds the lock leaves it held for good, as with any lock.
public final class ReentrantAsyncLock: Sendable {
    @usableFromInline let core = FairLockCore()

    public init() {}

    /// Whether some task holds the lock now (a snapshot).
    public var isLocked: Bool { core.state.withLock { $0.depth > 0 } }

    /// How many levels the current holder has taken (0 when free; a snapshot).
    public var holdCount: Int { core.state.withLock { $0.depth } }

    /// Whether the calling task holds the lock.
    public var isHeldByCurrentTask: Bool {
        let task = currentTaskIdentity
        return core.state.withLock { $0.depth > 0 && $0.holder == task }
    }

    /// How many tasks wait for the lock now (a snapshot).
    public var waiterCount: Int { core.state.withLock { $0.waiters.count } }

    /// Takes the lock if the calling task holds it already, or if it is free and nobody waits.
    /// Must be called from a task (re-entrance is a task's).
    /// - Returns: whether the caller now holds the lock (one level more).
    @inlinable
    public func tryLock() -> Bool {
        let task = currentTaskIdentity
        precondition(task != 0, "ReentrantAsyncLock.tryLock() called outside a task")
        return core.tryLock(task: task, reentrant: true) != nil
    }

    /// Takes the lock, at once if the calling task holds it, else in arrival order.
    /// - Throws: `CancellationError` when the task is cancelled while it waits (or before it
    ///   would wait); ``AsyncLockDeadlock`` when the lock is held by a ``withLock(_:)`` scope of
    ///   an ancestor task.
    @inlinable
    nonisolated(nonsending) public func lock() async throws {
        let task = currentTaskIdentity
        if core.tryLock(task: task, reentrant: true) != nil { return }
        _ = try await core.lock(task: task, reentrant: true, lockID: ObjectIdentifier(self))
    }

    /// Removes one level of the calling task's hold; the last one hands the lock to the first
    /// waiter. Stops the program when the calling task does not hold the lock.
    @inlinable
    public func unlock() {
        core.unlock(task: currentTaskIdentity, owned: true, typeName: "ReentrantAsyncLock")
    }

    /// Runs `body` holding the lock (one level more if the task holds it already), and releases
    /// that level on every path.
    ///
    /// The outermost scope records the hold for child tasks (a task-local), so that one asking
    /// for this lock throws ``AsyncLockDeadlock`` rather than waiting for a scope that waits for it.
    @discardableResult
    @inlinable
    nonisolated(nonsending) public func withLock<T, Failure: Error>(
        _ body: nonisolated(nonsending) () async throws(Failure) -> T
    ) async throws -> T {
        let task = currentTaskIdentity
        let grant: FairLockCore.Grant
        if let taken = core.tryLock(task: task, reentrant: true) {
            grant = taken
        } else {
            grant = try await core.lock(task: task, reentrant: true, lockID: ObjectIdentifier(self))
        }
        defer { unlock() }
        // An inner level needs no record: the one the first level made still names this hold
        // (unless that level came from lock(), which cannot record: then nothing is recorded).
        if grant.reentered { return try await body() }
        return try await LockHoldRecord.recording(
            lock: ObjectIdentifier(self),
            holder: task,
            generation: grant.generation,
            body
        )
    }
}
