import Synchronization

/// A fair mutual-exclusion lock for Swift concurrency: waiters are served first come, first
/// served, and a waiting task that is cancelled leaves the queue at once.
///
/// ```swift
/// let lock = AsyncLock()
/// try await lock.withLock { try await migrate() }
/// ```
///
/// - ``tryLock()`` takes the lock only when it is free *and* nobody waits, so it never barges
///   past a queued task (asyncio's `acquire_nowait`).
/// - A release hands the lock straight to the first waiter: it is never free in between, so no
///   newcomer can take it first.
/// - A cancelled waiter throws `CancellationError` and is out of the queue. A grant that races
///   the cancellation is never lost: either the waiter leaves before it is chosen (and the next
///   one is served), or it is chosen and returns holding the lock, which it must release as usual
///   (``withLock(_:)`` does). A free lock is taken without a cancellation check, as asyncio does.
/// - Inside ``withLock(_:)``, asking for the same lock again, from the same task or from a child
///   task, throws ``AsyncLockDeadlock`` instead of waiting forever.
///
/// The lock is not owned by a task: any task may call ``unlock()`` (a lock passed from one task
/// to another is fine), but unlocking a lock that is not held is a programming error that stops
/// the program. For a lock a task may take again while it holds it, see ``ReentrantAsyncLock``.
public final class AsyncLock: Sendable {
    @usableFromInline let core = FairLockCore()

    public init() {}

    /// Whether some task holds the lock now (a snapshot, for diagnostics and tests).
    public var isLocked: Bool { core.state.withLock { $0.depth > 0 } }

    /// How many tasks wait for the lock now (a snapshot).
    public var waiterCount: Int { core.state.withLock { $0.waiters.count } }

    /// Takes the lock if it is free and nobody waits for it.
    /// - Returns: whether the caller now holds the lock.
    @inlinable
    public func tryLock() -> Bool {
        core.tryLock(task: FairLockCore.noTask, reentrant: false) != nil
    }

    /// Waits for the lock, in arrival order.
    /// - Throws: `CancellationError` when the task is cancelled while it waits (or before it
    ///   would wait); ``AsyncLockDeadlock`` when the lock is held by a ``withLock(_:)`` scope of
    ///   this task or an ancestor.
    @inlinable
    nonisolated(nonsending) public func lock() async throws {
        let task = currentTaskIdentity
        if core.tryLock(task: task, reentrant: false) != nil { return }
        _ = try await core.lock(task: task, reentrant: false, lockID: ObjectIdentifier(self))
    }

    /// Releases the lock, handing it to the first waiter if there is one.
    @inlinable
    public func unlock() {
        core.unlock(task: 0, owned: false, typeName: "AsyncLock")
    }

    /// Runs `body` holding the lock, and releases it on every path (return, throw, cancellation).
    ///
    /// The hold is recorded for child tasks (a task-local), so that one asking for this lock
    /// throws ``AsyncLockDeadlock`` rather than waiting for a scope that waits for it.
    @discardableResult
    @inlinable
    nonisolated(nonsending) public func withLock<T, Failure: Error>(
        _ body: nonisolated(nonsending) () async throws(Failure) -> T
    ) async throws -> T {
        let task = currentTaskIdentity
        let grant: FairLockCore.Grant
        if let taken = core.tryLock(task: task, reentrant: false) {
            grant = taken
        } else {
            grant = try await core.lock(task: task, reentrant: false, lockID: ObjectIdentifier(self))
        }
        defer { unlock() }
        return try await LockHoldRecord.recording(
            lock: ObjectIdentifier(self),
            holder: task,
            generation: grant.generation,
            body
        )
    }
}
