/// What the `withLock` scopes of a task and its ancestors hold, bound as a task-local so that
/// child tasks inherit it: a task about to wait for a hold it finds here would wait for its own
/// ancestor (or itself), which cannot release before the task ends.
///
/// An entry names the hold by the lock's generation at grant time, so it goes stale by itself
/// once the scope releases: an unstructured `Task {}` that inherited the record and asks after
/// the scope has ended simply waits.
@usableFromInline
struct LockHoldRecord: Sendable {
    @usableFromInline var lock: ObjectIdentifier
    @usableFromInline var holder: UInt
    @usableFromInline var generation: UInt64
    @usableFromInline var outer: Outer?

    @usableFromInline
    final class Outer: Sendable {
        @usableFromInline let record: LockHoldRecord
        @usableFromInline init(_ record: LockHoldRecord) { self.record = record }
    }

    @inlinable
    init(lock: ObjectIdentifier, holder: UInt, generation: UInt64, outer: Outer?) {
        self.lock = lock
        self.holder = holder
        self.generation = generation
        self.outer = outer
    }

    /// The task-local itself (spelled out: a `@TaskLocal` wrapper's projection cannot be
    /// `@usableFromInline`, and `withLock` inlines into its callers).
    @usableFromInline static let slot = TaskLocal<LockHoldRecord?>(wrappedValue: nil)

    @inlinable static var current: LockHoldRecord? { slot.get() }

    /// The holder recorded for `lock`'s hold number `generation`, if some scope recorded it.
    func holder(of lock: ObjectIdentifier, generation: UInt64) -> UInt? {
        var entry = self
        while true {
            if entry.lock == lock, entry.generation == generation { return entry.holder }
            guard let outer = entry.outer else { return nil }
            entry = outer.record
        }
    }

    /// Runs `body` with `lock`'s hold recorded on top of what the task inherited.
    @inlinable
    nonisolated(nonsending) static func recording<T, Failure: Error>(
        lock: ObjectIdentifier,
        holder: UInt,
        generation: UInt64,
        _ body: nonisolated(nonsending) () async throws(Failure) -> T
    ) async throws -> T {
        let record = LockHoldRecord(
            lock: lock,
            holder: holder,
            generation: generation,
            outer: current.map(Outer.init)
        )
        return try await slot.withValue(record) { try await body() }
    }
}

/// Thrown instead of waiting forever: the hold the task would wait for belongs to a `withLock`
/// scope of the task itself (``AsyncLock`` is not re-entrant) or of one of its ancestors, which
/// cannot end before this task does.
///
/// A child task (`async let`, a task group) created inside a `withLock` scope and asking for the
/// same lock gets this error. So does an unstructured `Task {}` created there, while the scope
/// lasts: it inherits the task-locals that carry the record and cannot be told apart from a
/// child. Create such a task outside the scope, or with `Task.detached`, to make it wait.
public struct AsyncLockDeadlock: Error, Equatable, CustomStringConvertible {
    /// Whose hold the task would have waited for.
    public enum Kind: Sendable, Equatable {
        /// A `withLock` scope of an ancestor task (the task is its child, or was created in it).
        case heldByAncestor
        /// A `withLock` scope of this very task, on a lock that is not re-entrant.
        case heldByThisTask
    }

    /// Whose hold the task would have waited for.
    public let kind: Kind

    /// Creates the error (also for other locks built on these rules, like lockd's async client).
    public init(kind: Kind) { self.kind = kind }

    public var description: String {
        switch kind {
        case .heldByAncestor:
            "deadlock: the lock is held by a withLock scope of an ancestor task, which waits for this one"
        case .heldByThisTask:
            "deadlock: the lock is held by a withLock scope of this task and is not re-entrant"
        }
    }
}
