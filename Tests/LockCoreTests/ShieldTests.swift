import Testing

@testable import LockCore

@Suite("shield scopes")
struct ShieldTests {
    @Test("a shielded section runs to its end; the cancellation is delivered to the caller's next check")
    func shieldDefersCancellation() async throws {
        let steps = Shared<[String]>([])
        let task = Task {
            let value = await withShield {
                steps.update { $0.append("enter") }
                // A sleep in the body sleeps its full time: it sees no cancellation.
                let slept = (try? await Task.sleep(for: .milliseconds(100))) != nil
                steps.update { $0.append(slept ? "slept" : "woken early") }
                steps.update { $0.append(Task.isCancelled ? "cancel seen" : "no cancel seen") }
                return 7
            }
            steps.update { $0.append("returned \(value)") }
            try Task.checkCancellation()
            steps.update { $0.append("not delivered") }
        }
        #expect(await until { steps.current.contains("enter") })
        task.cancel()
        let result = await task.result
        #expect(steps.current == ["enter", "slept", "no cancel seen", "returned 7"])
        #expect(throws: CancellationError.self) { try result.get() }
    }

    @Test("nested shields: the inner one ends first, the outer one still holds, then the caller sees it")
    func nested() async throws {
        let steps = Shared<[String]>([])
        let task = Task {
            await withShield {
                await withShield {
                    try? await Task.sleep(for: .milliseconds(60))
                    steps.update { $0.append("inner done, cancelled: \(Task.isCancelled)") }
                }
                try? await Task.sleep(for: .milliseconds(30))
                steps.update { $0.append("outer done, cancelled: \(Task.isCancelled)") }
            }
            steps.update { $0.append("after, cancelled: \(Task.isCancelled)") }
        }
        try await Task.sleep(for: .milliseconds(10))
        task.cancel()
        await task.value
        #expect(
            steps.current == [
                "inner done, cancelled: false", "outer done, cancelled: false", "after, cancelled: true",
            ])
    }

    @Test("child tasks of the body are not cancelled by the caller's cancellation")
    func childrenAreShielded() async throws {
        let task = Task {
            await withShield {
                await withTaskGroup(of: Bool.self) { group in
                    group.addTask { (try? await Task.sleep(for: .milliseconds(80))) != nil }
                    return await group.next() ?? false
                }
            }
        }
        try await Task.sleep(for: .milliseconds(10))
        task.cancel()
        #expect(await task.value, "the child slept its full time")
    }

    @Test("the body's value and error come back; no cancellation, nothing delivered")
    func valueAndError() async throws {
        #expect(await withShield { 42 } == 42)
        struct Failure: Error {}
        await #expect(throws: Failure.self) { try await withShield { () throws(Failure) in throw Failure() } }
        #expect(!Task.isCancelled)
    }

    @Test("on an actor the body runs on that actor, at once")
    func runsOnCallersActor() async throws {
        let account = Account()
        #expect(await account.shieldedDeposit(5) == 5)
    }
}

actor Account {
    var balance = 0

    func shieldedDeposit(_ amount: Int) async -> Int {
        await withShield {
            self.assertIsolated("the shielded body runs on the caller's actor")
            balance += amount
            return balance
        }
    }
}
