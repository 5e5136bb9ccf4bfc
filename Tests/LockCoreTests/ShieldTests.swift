import Testing

@testable import LockCore

@Suite("async shields")
struct ShieldTests {
    @Test("a shielded section runs to its end and the cancellation is delivered afterwards")
    func shieldDefersCancellation() async throws {
        let finished = Flag()
        let task = Task {
            try await withCancellationShield {
                try? await Task.sleep(for: .milliseconds(100))
                await finished.set()
                return 1
            }
        }
        try await Task.sleep(for: .milliseconds(10))
        task.cancel()
        let result = await task.result
        #expect(await finished.value)
        #expect(throws: CancellationError.self) { try result.get() }
    }

    @Test("without cancellation the section's value is returned")
    func shieldReturnsValue() async throws {
        #expect(try await withCancellationShield { 42 } == 42)
        #expect(await withDeferredCancellation { "x" } == "x")
    }
}

actor Flag {
    var value = false
    func set() { value = true }
}
