import LockCluster
import LockCore
import Testing

/// The queue rule on a mirror of the store's lock keys: etcd's create-revision order, shared
/// keys waiting only for older exclusive ones, a node's own keys never blocking each other.
struct ClusterMirrorTests {
    let prefix = Array("/lockd/".utf8)
    let db = LockName("db")!

    func kv(_ node: String, lease: Int64, _ mode: LockMode, revision: Int64, lock: LockName? = nil)
        -> EtcdClient.KeyValue
    {
        let key = ClusterKey(lock: lock ?? db, node: node, lease: lease, sequence: UInt64(revision), mode: mode)
        return EtcdClient.KeyValue(
            key: key.path(under: prefix), value: [], createRevision: revision, modRevision: revision, lease: lease)
    }

    @Test("a key's path reads back, and no lock's keys fall under another lock's prefix")
    func paths() {
        let key = ClusterKey(lock: LockName("a/b.c")!, node: "n-1", lease: -5, sequence: 9, mode: .shared)
        #expect(ClusterKey(path: key.path(under: prefix), under: prefix) == key)
        let a = ClusterKey.lockPrefix(LockName("a")!, under: prefix)
        #expect(!key.path(under: prefix).starts(with: a))
        #expect(ClusterKey(path: Array("/lockd/l/zz/n/1/1/x".utf8), under: prefix) == nil)
    }

    @Test("exclusive keys go in revision order; shared keys share until an older exclusive key")
    func queueRule() {
        var mirror = ClusterMirror(prefix: prefix)
        _ = mirror.reset(
            revision: 10,
            kvs: [
                kv("a", lease: 1, .shared, revision: 5), kv("b", lease: 2, .shared, revision: 6),
                kv("c", lease: 3, .exclusive, revision: 7), kv("d", lease: 4, .shared, revision: 8),
            ])
        #expect(mirror.isGranted(db, mode: .shared, lease: 1, createRevision: 5) == true)
        #expect(mirror.isGranted(db, mode: .shared, lease: 2, createRevision: 6) == true)
        #expect(mirror.isGranted(db, mode: .exclusive, lease: 3, createRevision: 7) == false)
        #expect(mirror.isGranted(db, mode: .shared, lease: 4, createRevision: 8) == false, "behind an older writer")
        #expect(mirror.isWaitedFor(db, mode: .shared, lease: 1, createRevision: 5))
        mirror.apply(
            [
                .delete(key: kv("a", lease: 1, .shared, revision: 5).key, revision: 11),
                .delete(key: kv("b", lease: 2, .shared, revision: 6).key, revision: 11),
            ], revision: 11)
        #expect(mirror.isGranted(db, mode: .exclusive, lease: 3, createRevision: 7) == true)
        #expect(mirror.isGranted(db, mode: .shared, lease: 4, createRevision: 8) == false)
        // Undecidable before the mirror has reached the key's revision.
        #expect(mirror.isGranted(db, mode: .exclusive, lease: 9, createRevision: 12) == nil)
    }

    @Test("a node's own older shared key does not block its exclusive key (an upgrade)")
    func ownKeys() {
        var mirror = ClusterMirror(prefix: prefix)
        _ = mirror.reset(
            revision: 20, kvs: [kv("a", lease: 1, .shared, revision: 5), kv("a", lease: 1, .exclusive, revision: 9)])
        #expect(mirror.isGranted(db, mode: .exclusive, lease: 1, createRevision: 9) == true)
        // The same node under an earlier lease is another owner: its keys block until they expire.
        _ = mirror.reset(
            revision: 20, kvs: [kv("a", lease: 1, .shared, revision: 5), kv("a", lease: 2, .exclusive, revision: 9)])
        #expect(mirror.isGranted(db, mode: .exclusive, lease: 2, createRevision: 9) == false)
        #expect(mirror.hasConflict(db, mode: .shared, lease: 1))
        #expect(!mirror.hasConflict(LockName("other")!, mode: .exclusive, lease: nil))
    }
}
