import EtcdLauncher
import Foundation
import LockCluster
import NIOCore
import NIOPosix
import Testing

/// Every suite that starts an etcd cluster, one at a time: several clusters at once on two cores
/// (with ThreadSanitizer's slowdown) can keep etcd from electing a leader in time.
@Suite(.serialized) enum EtcdSuites {}

/// An ``EtcdClient`` on its own loop, driven from a test's thread.
final class ClientHarness: Sendable {
    let loop: any EventLoop
    let client: NIOLoopBound<EtcdClient>

    init(_ endpoints: [String], timeout: TimeAmount = .seconds(2)) throws {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        self.loop = loop
        let parsed = endpoints.compactMap(GatewayTransport.Endpoint.init(url:))
        client = try loop.submit {
            NIOLoopBound(
                EtcdClient(transport: GatewayTransport(endpoints: parsed, loop: loop), timeout: timeout),
                eventLoop: loop)
        }.wait()
    }

    func run<T: Sendable>(_ body: @escaping @Sendable (EtcdClient) -> EventLoopFuture<T>) throws -> T {
        try loop.flatSubmit { body(self.client.value) }.wait()
    }

    func shutdown() {
        try? loop.submit { self.client.value.transport.shutdown() }.wait()
    }
}

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

/// Watch events collected off the loop.
final class Collected: @unchecked Sendable {
    private let lock = NSLock()
    private var events: [EtcdClient.Event] = []
    private var end: EtcdClient.WatchEnd?

    func add(_ new: [EtcdClient.Event]) { lock.withLock { events += new } }
    func finish(_ how: EtcdClient.WatchEnd) { lock.withLock { end = how } }
    var snapshot: ([EtcdClient.Event], EtcdClient.WatchEnd?) { lock.withLock { (events, end) } }

    /// Waits until `done` holds of what was collected, at most `timeout` seconds.
    func wait(_ timeout: Double, until done: ([EtcdClient.Event], EtcdClient.WatchEnd?) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let (events, end) = snapshot
            if done(events, end) { return true }
            usleep(5000)
        }
        return false
    }
}

extension EtcdSuites {
    @Suite("etcd's v3 API through its JSON gateway, against a real 3-member cluster", .serialized)
    struct EtcdClientTests {
        let cluster: EtcdCluster

        init() throws { cluster = try EtcdCluster() }

        @Test("a lease is granted, kept alive and revoked; a revoked lease keeps nothing alive")
        func leases() throws {
            let harness = try ClientHarness(cluster.endpoints)
            defer { harness.shutdown() }
            let lease = try harness.run { $0.grantLease(ttl: 5) }
            #expect(lease.ttl == 5)
            #expect(try harness.run { $0.keepAlive(lease.id) } == 5)
            try harness.run { $0.revokeLease(lease.id) }
            #expect(try harness.run { $0.keepAlive(lease.id) } == 0)
        }

        @Test("create only if absent, with the queue read in the same transaction; delete only that revision")
        func guardedKeys() throws {
            let harness = try ClientHarness(cluster.endpoints)
            defer { harness.shutdown() }
            let lease = try harness.run { $0.grantLease(ttl: 10) }
            let prefix = bytes("/t/guarded/")
            let first = try harness.run {
                $0.create(key: bytes("/t/guarded/a"), value: [1], lease: lease.id, alsoRange: prefix)
            }
            #expect(first.created)
            #expect(first.kvs.map(\.createRevision) == [first.revision])
            #expect(first.kvs.first?.lease == lease.id && first.kvs.first?.value == [1])
            let again = try harness.run {
                $0.create(key: bytes("/t/guarded/a"), value: [2], lease: lease.id, alsoRange: prefix)
            }
            #expect(!again.created)
            #expect(again.kvs.first?.value == [1], "the existing key is untouched")
            let second = try harness.run {
                $0.create(key: bytes("/t/guarded/b"), value: [], lease: lease.id, alsoRange: prefix)
            }
            #expect(second.kvs.map(\.createRevision) == [first.revision, second.revision])
            // Another prefix that merely starts the same is not in the range.
            _ = try harness.run {
                $0.create(key: bytes("/t/guardedx"), value: [], lease: lease.id, alsoRange: bytes("/t/x"))
            }
            #expect(try harness.run { $0.range(prefix: prefix) }.kvs.count == 2)
            #expect(
                try harness.run { $0.delete(key: bytes("/t/guarded/a"), createRevision: first.revision + 100) } == false
            )
            #expect(try harness.run { $0.delete(key: bytes("/t/guarded/a"), createRevision: first.revision) } == true)
            #expect(try harness.run { $0.range(prefix: prefix) }.kvs.map(\.createRevision) == [second.revision])
        }

        @Test("a watch from a revision sees every later put and delete, and a lease's expiry deletes its keys")
        func watch() throws {
            let harness = try ClientHarness(cluster.endpoints)
            let writer = try ClientHarness(cluster.endpoints.reversed())
            defer {
                harness.shutdown()
                writer.shutdown()
            }
            let prefix = bytes("/t/watch/")
            let start = try harness.run { $0.range(prefix: prefix) }.revision
            let collected = Collected()
            let stream = try harness.loop.submit {
                NIOLoopBound(
                    harness.client.value.watch(
                        prefix: prefix, from: start + 1, onEvents: { events, _ in collected.add(events) },
                        onEnd: collected.finish), eventLoop: harness.loop)
            }.wait()
            let lease = try writer.run { $0.grantLease(ttl: 1) }
            let created = try writer.run {
                $0.create(key: bytes("/t/watch/k"), value: [7], lease: lease.id, alsoRange: prefix)
            }
            #expect(collected.wait(5) { events, _ in events.count == 1 })
            #expect(collected.snapshot.0.first == .put(created.kvs[0]))
            // Nobody keeps the lease alive: etcd deletes the key when it expires (1 s, or a little more).
            #expect(collected.wait(8) { events, _ in events.count == 2 })
            if case .delete(let key, let revision)? = collected.snapshot.0.last {
                #expect(key == bytes("/t/watch/k") && revision > created.revision)
            } else {
                Issue.record("no delete: \(collected.snapshot)")
            }
            try harness.loop.submit { stream.value.close() }.wait()
            #expect(collected.wait(5) { _, end in end != nil })
        }

        @Test("calls go on through another member when the one in use is killed")
        func failover() throws {
            let harness = try ClientHarness(cluster.endpoints, timeout: .milliseconds(500))
            defer { harness.shutdown() }
            _ = try harness.run { $0.range(prefix: bytes("/t/")) }
            cluster.kill(0)
            // Calls fail on the dead member (and while the others elect a leader, if it led), then
            // go through another member.
            #expect(eventually(timeout: 10) { (try? harness.run { $0.range(prefix: bytes("/t/")) }) != nil })
            for _ in 0..<3 { #expect(throws: Never.self) { try harness.run { $0.range(prefix: bytes("/t/")) } } }
        }

        @Test("a watch on a member cut off from its quorum is cancelled rather than left silent")
        func watchWithoutLeader() throws {
            let harness = try ClientHarness([cluster.endpoints[0]])
            defer { harness.shutdown() }
            let collected = Collected()
            _ = try harness.loop.submit {
                NIOLoopBound(
                    harness.client.value.watch(
                        prefix: bytes("/t/"), from: 1, onEvents: { events, _ in collected.add(events) },
                        onEnd: collected.finish), eventLoop: harness.loop)
            }.wait()
            usleep(300_000)
            cluster.signal(1, SIGSTOP)
            cluster.signal(2, SIGSTOP)
            defer {
                cluster.signal(1, SIGCONT)
                cluster.signal(2, SIGCONT)
            }
            #expect(collected.wait(10) { _, end in end != nil }, "the watch should end once the member has no leader")
            if case .cancelled(let reason)? = collected.snapshot.1 {
                #expect(reason.contains("leader"), "\(reason)")
            }
        }
    }
}
