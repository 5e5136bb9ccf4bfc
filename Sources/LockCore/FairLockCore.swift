import CTaskIdentity
import DequeModule
import Synchronization

/// The queue and hold that ``AsyncLock`` and ``ReentrantAsyncLock`` share: one mutex-guarded
/// state, a FIFO of suspended waiters, and hand-off on release (the lock is never free while
/// somebody waits, so nobody can barge).
@usableFromInline
struct FairLockCore: ~Copyable, Sendable {
    @usableFromInline
    struct State {
        /// The holding task's address (``currentTaskIdentity``); 0 when free. An ``AsyncLock``
        /// holder that is not a task records ``noTask``.
        @usableFromInline
        var holder: UInt = 0
        /// Re-entrant depth of the hold (0 when free).
        @usableFromInline
        var depth = 0
        /// Counts holds: a new value for every grant from free or by hand-off. A hold recorded
        /// for child tasks (``LockHoldRecord``) is still the current one while it matches.
        @usableFromInline
        var generation: UInt64 = 0
        @usableFromInline
        var waiters: Deque<Waiter> = []
        @usableFromInline
        var nextTicket: UInt64 = 0
        /// Tickets whose task was cancelled before it could queue.
        @usableFromInline
        var cancelledEarly: Set<UInt64> = []

        @inlinable
        mutating func grant(to task: UInt) {
            holder = task
            depth = 1
            generation &+= 1
        }

        @inlinable
        mutating func tryLock(task: UInt, reentrant: Bool) -> Grant? {
            if depth == 0, waiters.isEmpty {
                grant(to: task)
                return Grant(generation: generation, reentered: false)
            }
            if reentrant, depth > 0, holder == task {
                depth += 1
                return Grant(generation: generation, reentered: true)
            }
            return nil
        }
    }

    @usableFromInline
    struct Waiter {
        @usableFromInline var ticket: UInt64
        @usableFromInline var task: UInt
        @usableFromInline var continuation: UnsafeContinuation<UInt64, any Error>
        /// The hold's generation, set when the lock is handed to this waiter.
        @usableFromInline var generation: UInt64 = 0
    }

    /// What a holder that is no task (a thread calling ``AsyncLock/tryLock()``) records: task
    /// addresses are aligned, so 1 is never one.
    @usableFromInline static let noTask: UInt = 1

    @usableFromInline let state = Mutex(State())

    @usableFromInline init() {}

    /// What a caller got: the hold's generation, and whether it only went one level deeper.
    @usableFromInline
    struct Grant {
        @usableFromInline var generation: UInt64
        @usableFromInline var reentered: Bool

        @inlinable
        init(generation: UInt64, reentered: Bool) {
            self.generation = generation
            self.reentered = reentered
        }
    }

    /// Takes the lock if it is free and nobody waits, or (`reentrant`) if `task` holds it.
    @inlinable
    func tryLock(task: UInt, reentrant: Bool) -> Grant? {
        state.withLock { $0.tryLock(task: task, reentrant: reentrant) }
    }

    /// Waits for the lock in arrival order, unless taking it now is possible.
    /// - Throws: `CancellationError` when cancelled while waiting; ``AsyncLockDeadlock`` when
    ///   the hold it would wait for belongs to a `withLock` scope of this task or an ancestor.
    @usableFromInline
    nonisolated(nonsending) func lock(task: UInt, reentrant: Bool, lockID: ObjectIdentifier) async throws -> Grant {
        if let grant = tryLock(task: task, reentrant: reentrant) { return grant }
        // The slow path only: reading the task-local record costs a task-local look-up.
        let record = LockHoldRecord.current
        // Either a grant now, or a ticket to wait with.
        let outcome: Result<(Grant?, UInt64), AsyncLockDeadlock> = state.withLock { state in
            if let grant = state.tryLock(task: task, reentrant: reentrant) { return .success((grant, 0)) }
            if let holder = record?.holder(of: lockID, generation: state.generation) {
                return .failure(AsyncLockDeadlock(kind: holder == task ? .heldByThisTask : .heldByAncestor))
            }
            state.nextTicket += 1
            return .success((nil, state.nextTicket))
        }
        let (granted, ticket) = try outcome.get()
        if let granted { return granted }
        try Task.checkCancellation()
        // Once the handler scope is left no cancellation handler can run: a mark left by one that
        // came after the grant goes here.
        defer { state.withLock { _ = $0.cancelledEarly.remove(ticket) } }
        let generation = try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<UInt64, any Error>) in
                let cancelled = state.withLock { state in
                    if state.cancelledEarly.remove(ticket) != nil { return true }
                    state.waiters.append(Waiter(ticket: ticket, task: task, continuation: continuation))
                    return false
                }
                if cancelled { continuation.resume(throwing: CancellationError()) }
            }
        } onCancel: {
            let waiter: Waiter? = state.withLock { state in
                if let index = state.waiters.firstIndex(where: { $0.ticket == ticket }) {
                    return state.waiters.remove(at: index)
                }
                // Not queued yet: it sees the mark when it comes. (Or granted already: it holds the
                // lock, and the `defer` above takes the mark away.)
                state.cancelledEarly.insert(ticket)
                return nil
            }
            waiter?.continuation.resume(throwing: CancellationError())
        }
        return Grant(generation: generation, reentered: false)
    }

    /// Ends one level of the hold; the last level hands the lock to the first waiter.
    /// - Parameter task: the releasing task, checked against the holder when `owned`.
    @inlinable
    func unlock(task: UInt, owned: Bool, typeName: StaticString) {
        // Only a class-free optional crosses withLock: a tuple here costs generic value witnesses.
        let next: Waiter? = state.withLock { state in
            guard state.depth > 0 else {
                preconditionFailure("\(typeName).unlock() called while the lock is not held")
            }
            if owned, state.holder != task {
                preconditionFailure("\(typeName).unlock() called by a task that does not hold the lock")
            }
            state.depth -= 1
            guard state.depth == 0 else { return nil }
            guard var next = state.waiters.popFirst() else {
                state.holder = 0
                return nil
            }
            state.grant(to: next.task)
            next.generation = state.generation
            return next
        }
        if let next { next.continuation.resume(returning: next.generation) }
    }
}

/// The running task's address (0 outside a task): it names the task while the task runs.
@inlinable
package var currentTaskIdentity: UInt { UInt(lockcore_current_task()) }
