/// Runs `body` to its end even if the calling task is cancelled meanwhile, then lets the
/// cancellation through: the caller's next cancellation check throws (asyncio's
/// `shield_scope()`, for Swift tasks).
///
/// ```swift
/// try await withShield {
///     try await database.migrate()      // runs to its end even if the caller is cancelled
/// }
/// try Task.checkCancellation()          // …and the cancellation is delivered here
/// ```
///
/// What the shield holds back, while `body` runs:
/// - `Task.isCancelled` and `Task.checkCancellation()` in `body` see no cancellation; a
///   `Task.sleep` in `body` sleeps its full time; cancellation handlers in `body` do not run.
/// - Child tasks that `body` creates (`async let`, task groups) are not cancelled by the
///   caller's cancellation; `body` can still cancel its own groups.
///
/// What it does not hold back:
/// - The caller's cancellation itself: it stays set, and the first check after the shield sees
///   it. (The body's result is returned as usual: the section's work is done.)
/// - Tasks running beside the caller (its siblings, tasks it created before the shield), and
///   `Task {}`/`Task.detached` tasks that `body` creates, which are never cancelled by the
///   caller anyway.
/// - A second cancellation of the caller during `body` changes nothing: cancellation is a flag.
///
/// Nesting is balanced by construction: each shield is a scope.
///
/// How: before Swift 6.4 (no `withTaskCancellationShield`, SE-0504) `body` runs in a task of its
/// own, started with `Task.immediate` (SE-0472) on the caller's isolation, so it begins at once on
/// the caller's thread with no trip through the scheduler; the caller waits for it, and a task
/// does not inherit its creator's cancellation. It does inherit priority and task-locals. With
/// Swift 6.4 it is the standard library's shield (children follow SE-0504's rules there).
#if compiler(>=6.4)
    nonisolated(nonsending) public func withShield<T, Failure: Error>(
        _ body: nonisolated(nonsending) () async throws(Failure) -> T
    ) async throws(Failure) -> T {
        try await withTaskCancellationShield(operation: body)
    }
#else
    public func withShield<T, Failure: Error>(
        isolation: isolated (any Actor)? = #isolation,
        _ body: () async throws(Failure) -> T
    ) async throws(Failure) -> T {
        try await runSection(isolation: isolation, forwardingCancellation: false, body)
    }
#endif

/// Runs `body` in a task of its own on the caller's isolation, started at once
/// (`Task.immediate`), and waits for it. `started` gets a way to cancel that task (lockd's async
/// client cancels a section whose hold is lost); with `forwardingCancellation` the caller's
/// cancellation reaches the section, without it the section is shielded.
package func runSection<T, Failure: Error>(
    isolation: isolated (any Actor)? = #isolation,
    forwardingCancellation: Bool,
    started: (_ cancel: @escaping @Sendable () -> Void) -> Void = { _ in },
    _ body: () async throws(Failure) -> T
) async throws(Failure) -> T {
    let outcome = await withoutActuallyEscaping(body) { body in
        // The section's task runs on the caller's isolation and is awaited before this returns,
        // so `body` and its result never cross an isolation boundary; the boxes only tell the
        // compiler so.
        let section = UncheckedSendable(body)
        let task = Task.immediate { [isolation] () async -> UncheckedSendable<Result<T, Failure>> in
            _ = isolation
            do throws(Failure) {
                return UncheckedSendable(.success(try await section.value()))
            } catch {
                return UncheckedSendable(.failure(error))
            }
        }
        started { task.cancel() }
        guard forwardingCancellation else { return await task.value }
        return await withTaskCancellationHandler {
            await task.value
        } onCancel: {
            task.cancel()
        }
    }
    return try outcome.value.get()
}

/// A value the compiler cannot prove safe to move between tasks, moved where it is not shared.
private struct UncheckedSendable<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}
