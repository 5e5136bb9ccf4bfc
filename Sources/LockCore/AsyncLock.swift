import DequeModule
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
///   (``withLock(_:)`` does).
///
/// The lock is not owned by a task: any task may call ``unlock()`` (a lock passed from one task
/// to another is fine), but unlocking a lock that is not held is a programming error that stops
/// the program. For a lock a task may take again while it holds it, see ``ReentrantAsyncLock``.
public final class AsyncLock: Sendable {
    private let state = Mutex(State())

    fileprivate struct State {
        var isHeld = false
        var waiters: Deque<Waiter> = []
        var nextTicket: UInt64 = 0
        /// Tickets whose task was cancelled before it could queue.
        var cancelledEarly: Set<UInt64> = []
    }

    fileprivate struct Waiter {
        var ticket: UInt64
        var continuation: CheckedContinuation<Void, any Error>
    }

    public init() {}

    /// Whether some task holds the lock now (a snapshot, for diagnostics and tests).
    public var isLocked: Bool { state.withLock { $0.isHeld } }

    /// How many tasks wait for the lock now (a snapshot).
    public var waiterCount: Int { state.withLock { $0.waiters.count } }

    /// Takes the lock if it is free and nobody waits for it.
    /// - Returns: whether the caller now holds the lock.
    public func tryLock() -> Bool {
        state.withLock { state in
            guard !state.isHeld, state.waiters.isEmpty else { return false }
            state.isHeld = true
            return true
        }
    }

    /// Waits for the lock, in arrival order.
    /// - Throws: `CancellationError` when the task is cancelled while it waits (or before).
    public func lock() async throws {
        try Task.checkCancellation()
        let ticket: UInt64? = state.withLock { state in
            if !state.isHeld, state.waiters.isEmpty {
                state.isHeld = true
                return nil
            }
            state.nextTicket += 1
            return state.nextTicket
        }
        guard let ticket else { return }
        // Once the handler scope is left no cancellation handler can run: a mark left by one that
        // came after the grant goes here.
        defer { state.withLock { _ = $0.cancelledEarly.remove(ticket) } }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let cancelled = state.withLock { state in
                    if state.cancelledEarly.remove(ticket) != nil { return true }
                    state.waiters.append(Waiter(ticket: ticket, continuation: continuation))
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
                // lock, and ``lock()`` takes the mark away when it returns.)
                state.cancelledEarly.insert(ticket)
                return nil
            }
            waiter?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Releases the lock, handing it to the first waiter if there is one.
    public func unlock() {
        let next: Waiter? = state.withLock { state in
            precondition(state.isHeld, "AsyncLock.unlock() called while the lock is not held")
            guard let next = state.waiters.popFirst() else {
                state.isHeld = false
                return nil
            }
            return next
        }
        next?.continuation.resume()
    }

    /// Runs `body` holding the lock, and releases it on every path (return, throw, cancellation).
    public func withLock<T, Failure: Error>(
        _ body: () async throws(Failure) -> sending T
    ) async throws -> sending T {
        try await lock()
        defer { unlock() }
        return try await body()
    }
}
