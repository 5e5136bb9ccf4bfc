/// Runs `body` to its end even if the calling task is cancelled meanwhile, then delivers the
/// cancellation: the asyncio `shield_scope()` idea for Swift tasks.
///
/// Swift 6.3 has no `withTaskCancellationShield` (SE-0504 arrives in 6.4). An unstructured task
/// does not inherit cancellation but does inherit priority and task-locals, and awaiting its
/// value keeps the caller waiting for the whole section, so it serves as the shield.
///
/// - Returns: the body's result when the caller was not cancelled.
/// - Throws: the body's error, or `CancellationError` after the body finished when the caller
///   was cancelled during the section (the section's work is done; its result is dropped, as
///   asyncio does when it re-raises the deferred cancellation).
public func withCancellationShield<T: Sendable>(
    _ body: sending @escaping @isolated(any) () async throws -> T
) async throws -> T {
    let section = Task(operation: body)
    let result = await section.result
    try Task.checkCancellation()
    return try result.get()
}

/// Runs `body` to its end even if the calling task is cancelled meanwhile; the cancellation stays
/// set on the caller and is observed by its next cancellation check.
public func withDeferredCancellation<T: Sendable>(
    _ body: sending @escaping @isolated(any) () async -> T
) async -> T {
    await Task(operation: body).value
}
