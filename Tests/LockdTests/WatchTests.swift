import Foundation
import LockClient
import LockProtocol
import Testing

@Suite("the watch op and lockctl status --watch, against a real lockd", .serialized)
struct WatchTests {
    /// The `changed` events a watcher has received, as (lock, holder count) pairs.
    private func changes(_ watcher: LockConnection, count: Int) throws -> [(String, Int)] {
        var seen: [(String, Int)] = []
        while seen.count < count, let event = try watcher.next(timeout: 5) {
            #expect(event["event"] == "changed", "\(event.serialized)")
            guard let lock = event["lock"]?.string else { continue }
            seen.append((lock, event["locks"]?.elements.first?["holders"]?.elements.count ?? 0))
        }
        return seen
    }

    @Test("watch answers like status, then one changed event per change, with the lock's new state")
    func events() throws {
        let daemon = try Daemon()
        let holder = try daemon.connect()
        _ = try holder.acquire("before")
        let watcher = try daemon.connect()
        let snapshot = try watcher.ask("watch")
        #expect(snapshot.isOK)
        #expect(snapshot["locks"]?.elements.map { $0["name"] } == ["before"])

        _ = try holder.acquire("a")
        _ = try holder.ask("release", [("lock", "a")])
        _ = try holder.ask("release", [("lock", "before")])
        let seen = try changes(watcher, count: 3)
        #expect(seen.map(\.0) == ["a", "a", "before"])
        #expect(seen.map(\.1) == [1, 0, 0])

        // A lock watched alone: changes of others are not sent.
        let single = try daemon.connect()
        #expect(try single.ask("watch", [("lock", "only")]).isOK)
        _ = try holder.acquire("other")
        _ = try holder.acquire("only")
        #expect(try changes(single, count: 1).map(\.0) == ["only"])
    }

    @Test("a second watch on one connection is invalid; the first one goes on; a closed watcher costs nothing")
    func oneWatchPerConnection() throws {
        let daemon = try Daemon()
        let watcher = try daemon.connect()
        #expect(try watcher.ask("watch").isOK)
        #expect(try watcher.ask("watch", [("lock", "x")]).code == "invalid")
        let other = try daemon.connect()
        _ = try other.acquire("x")
        #expect(try changes(watcher, count: 1).map(\.0) == ["x"])
        #expect(try watcher.ask("watch", [("lock", "bad name")]).code == "invalid")
    }

    @Test("lockctl status --watch --json prints the snapshot, then each change, until SIGINT")
    func lockctlWatch() throws {
        let daemon = try Daemon()
        let (process, pipe) = try spawn(
            Binaries.lockctl, ["status", "--watch", "--json"], environment: ["LOCKD_SOCKET": daemon.socket])
        let holder = try daemon.connect()
        // The watch is registered once lockctl has printed its snapshot; acquire after that.
        let reader = LineReader(pipe)
        let first = try #require(reader.line(timeout: 5))
        #expect(first == #"{"locks":[]}"#)
        _ = try holder.acquire("w")
        let event = try #require(reader.line(timeout: 5))
        #expect(event.contains(#""event":"changed","lock":"w""#))
        kill(process.processIdentifier, SIGINT)
        #expect(waitExit(process) != nil)
        #expect(diedBy(process) == SIGINT)
    }
}
