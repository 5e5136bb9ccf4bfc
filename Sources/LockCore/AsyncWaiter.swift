import Synchronization

/// Tasks wait for the next event: ``wait()`` suspends until the next ``notify()``, which wakes
/// every task waiting at that moment (in the order they came). There is no flag to clear: a task
/// that starts waiting after a notify waits for the one after (the seed's `Waiter`).
///
/// ```swift
/// let changed = AsyncWaiter()
/// // one task:            // another:
/// try await changed.wait()   changed.notify()
/// ```
///
/// A waiting task that is cancelled leaves at once and throws `CancellationError`.
public final class AsyncWaiter: Sendable {
    private let state = Mutex(State())

    private struct State {
        var waiting: [(ticket: UInt64, continuation: CheckedContinuation<Void, any Error>)] = []
        var nextTicket: UInt64 = 0
        /// Tickets whose task was cancelled before it could wait.
        var cancelledEarly: Set<UInt64> = []
    }

    public init() {}

    /// How many tasks wait now (a snapshot).
    public var waiterCount: Int { state.withLock { $0.waiting.count } }

    /// Suspends until the next ``notify()``.
    /// - Throws: `CancellationError` when the task is cancelled while it waits (or before).
    public func wait() async throws {
        try Task.checkCancellation()
        let ticket = state.withLock { state in
            state.nextTicket += 1
            return state.nextTicket
        }
        // Once the handler scope is left no cancellation handler can run: a mark left by one that
        // came after the wake-up goes here.
        defer { state.withLock { _ = $0.cancelledEarly.remove(ticket) } }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let cancelled = state.withLock { state in
                    if state.cancelledEarly.remove(ticket) != nil { return true }
                    state.waiting.append((ticket, continuation))
                    return false
                }
                if cancelled { continuation.resume(throwing: CancellationError()) }
            }
        } onCancel: {
            let continuation: CheckedContinuation<Void, any Error>? = state.withLock { state in
                if let index = state.waiting.firstIndex(where: { $0.ticket == ticket }) {
                    return state.waiting.remove(at: index).continuation
                }
                // Not waiting yet: it sees the mark when it comes. (Or woken already: ``wait()``
                // takes the mark away when it returns.)
                state.cancelledEarly.insert(ticket)
                return nil
            }
            continuation?.resume(throwing: CancellationError())
        }
    }

    /// Wakes every task waiting now.
    public func notify() {
        let woken = state.withLock { state in
            let woken = state.waiting
            state.waiting = []
            return woken
        }
        for waiter in woken { waiter.continuation.resume() }
    }
}
