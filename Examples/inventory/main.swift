// An inventory service in miniature: tasks of this process share a cache under a
// ReentrantAsyncLock, and the nightly write-out is a shielded section under a lockd lock, so that
// two copies of the program (or a shell script using lockctl) never write at the same time.
//
//   swift run lockd-example            (with a lockd running: see the README's first command)

import AsyncLockClient
import LockCore

#if canImport(Glibc)
    import Glibc
#endif

actor Inventory {
    private var stock: [String: Int] = [:]
    func add(_ item: String, _ count: Int) { stock[item, default: 0] += count }
    var snapshot: [String: Int] { stock }
}

let inventory = Inventory()
let cacheLock = ReentrantAsyncLock()

/// Restocks under the in-process lock; the nested withLock is the same task re-entering.
func restock(_ item: String) async throws {
    try await cacheLock.withLock {
        await inventory.add(item, 1)
        try await cacheLock.withLock { await inventory.add(item, 1) }
    }
}

try await withThrowingTaskGroup(of: Void.self) { group in
    for item in ["bolts", "nuts", "washers", "bolts"] { group.addTask { try await restock(item) } }
    try await group.waitForAll()
}
print("in process:", await inventory.snapshot.sorted { $0.key < $1.key })

let client = LockdClient()
do {
    try await client.withLock("example/inventory", wait: .seconds(5), shielded: true) { fence in
        // A shielded section: a `lockctl break` (or cancelling this task) waits for its end.
        try await Task.sleep(for: .milliseconds(200))
        print("wrote the inventory under lockd's lock, fence \(fence)")
    }
} catch let error as LockdClientError {
    print("lockd: \(error)")
    exit(error.code == nil ? 69 : 75)
}
await client.close()
