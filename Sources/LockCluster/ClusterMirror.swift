import LockCore

/// Where a node's key for a lock lives in the store:
/// `PREFIX` `l/` hex(lock name) `/` node `/` lease (hex) `/` sequence `/` `x` or `s`.
///
/// The lock name is written in hex so that no name's keys fall under another's prefix ("a" and
/// "a/b"); the lease makes keys of a node's earlier life (a lease that is expiring) other keys
/// than its current ones; the sequence makes every key a node creates a new one, so a key being
/// deleted is never mistaken for its successor.
public struct ClusterKey: Sendable, Hashable {
    public var lock: LockName
    public var node: String
    public var lease: Int64
    public var sequence: UInt64
    public var mode: LockMode

    public init(lock: LockName, node: String, lease: Int64, sequence: UInt64, mode: LockMode) {
        self.lock = lock
        self.node = node
        self.lease = lease
        self.sequence = sequence
        self.mode = mode
    }

    /// Every key of one lock starts with this.
    public static func lockPrefix(_ lock: LockName, under prefix: [UInt8]) -> [UInt8] {
        prefix + Array("l/".utf8) + hex(Array(lock.rawValue.utf8)) + [UInt8(ascii: "/")]
    }

    public func path(under prefix: [UInt8]) -> [UInt8] {
        Self.lockPrefix(lock, under: prefix)
            + Array("\(node)/\(String(UInt64(bitPattern: lease), radix: 16))/\(sequence)/".utf8)
            + [UInt8(ascii: mode == .exclusive ? "x" : "s")]
    }

    /// Reads a key's path back; `nil` for anything else under the prefix.
    public init?(path: [UInt8], under prefix: [UInt8]) {
        guard path.starts(with: prefix + Array("l/".utf8)) else { return nil }
        let parts = path.dropFirst(prefix.count + 2).split(
            separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
        guard parts.count == 5,
            let name = Self.unhex(Array(parts[0])).flatMap({ LockName(String(decoding: $0, as: UTF8.self)) }),
            let lease = UInt64(String(decoding: parts[2], as: UTF8.self), radix: 16),
            let sequence = UInt64(String(decoding: parts[3], as: UTF8.self)), parts[4].count == 1
        else { return nil }
        let mode: LockMode
        switch parts[4].first {
        case UInt8(ascii: "x"): mode = .exclusive
        case UInt8(ascii: "s"): mode = .shared
        default: return nil
        }
        self.init(
            lock: name, node: String(decoding: parts[1], as: UTF8.self), lease: Int64(bitPattern: lease),
            sequence: sequence, mode: mode)
    }

    static func hex(_ bytes: [UInt8]) -> [UInt8] {
        let digits = Array("0123456789abcdef".utf8)
        return bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0xf)]] }
    }

    static func unhex(_ bytes: [UInt8]) -> [UInt8]? {
        guard bytes.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        var index = 0
        while index < bytes.count {
            guard let high = digit(bytes[index]), let low = digit(bytes[index + 1]) else { return nil }
            out.append(high << 4 | low)
            index += 2
        }
        return out
    }

    private static func digit(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        default: nil
        }
    }
}

/// A node's copy of every lock key in the store, fed by one range and then one watch, and the
/// queue rule that decides grants on it: etcd's create-revision order. A key is granted when no
/// older key of another lease conflicts with it (a shared key waits only for older exclusive
/// keys, an exclusive key for every older key), so the cluster's FIFO order is etcd's revision
/// order and every node decides the same.
///
/// A decision about a key needs the mirror to have reached the key's create revision: only then
/// are all older keys in it.
public struct ClusterMirror: Sendable {
    /// A key in the store.
    public struct Entry: Sendable, Hashable {
        public var key: ClusterKey
        public var createRevision: Int64

        public init(key: ClusterKey, createRevision: Int64) {
            self.key = key
            self.createRevision = createRevision
        }
    }

    public let prefix: [UInt8]
    /// The store's revision this mirror shows.
    public private(set) var revision: Int64 = 0
    private var byLock: [LockName: [Entry]] = [:]
    private var byPath: [[UInt8]: Entry] = [:]

    public init(prefix: [UInt8]) { self.prefix = prefix }

    /// Starts again from a range read at `revision`.
    public mutating func reset(revision: Int64, kvs: [EtcdClient.KeyValue]) -> Set<LockName> {
        let before = Set(byLock.keys)
        byLock = [:]
        byPath = [:]
        self.revision = revision
        for kv in kvs { insert(kv) }
        return before.union(byLock.keys)
    }

    /// Applies a watch batch; returns the locks whose keys changed.
    @discardableResult
    public mutating func apply(_ events: [EtcdClient.Event], revision: Int64) -> Set<LockName> {
        var changed: Set<LockName> = []
        for event in events {
            switch event {
            case .put(let kv):
                if let lock = insert(kv) { changed.insert(lock) }
            case .delete(let path, _):
                guard let entry = byPath.removeValue(forKey: path) else { continue }
                byLock[entry.key.lock]?.removeAll { $0 == entry }
                if byLock[entry.key.lock]?.isEmpty == true { byLock[entry.key.lock] = nil }
                changed.insert(entry.key.lock)
            }
        }
        self.revision = max(self.revision, revision)
        return changed
    }

    @discardableResult
    private mutating func insert(_ kv: EtcdClient.KeyValue) -> LockName? {
        guard let key = ClusterKey(path: kv.key, under: prefix) else { return nil }
        let entry = Entry(key: key, createRevision: kv.createRevision)
        if let old = byPath.updateValue(entry, forKey: kv.key) { byLock[old.key.lock]?.removeAll { $0 == old } }
        var entries = byLock[key.lock] ?? []
        let position = entries.firstIndex { $0.createRevision > entry.createRevision } ?? entries.count
        entries.insert(entry, at: position)
        byLock[key.lock] = entries
        return key.lock
    }

    /// The locks that have keys.
    public var lockNames: [LockName] { Array(byLock.keys) }

    /// The keys of a lock in revision order.
    public func entries(of lock: LockName) -> [Entry] { byLock[lock] ?? [] }

    /// Whether the key created at `revision` with `lease` in `mode` is granted: `nil` while the
    /// mirror is behind that revision (it cannot tell yet).
    public func isGranted(_ lock: LockName, mode: LockMode, lease: Int64, createRevision: Int64) -> Bool? {
        guard revision >= createRevision else { return nil }
        return Self.isGranted(mode: mode, lease: lease, createRevision: createRevision, among: entries(of: lock))
    }

    /// The queue rule over a list of keys (the mirror's, or a transaction's own range).
    public static func isGranted(mode: LockMode, lease: Int64, createRevision: Int64, among entries: [Entry]) -> Bool {
        blockers(mode: mode, lease: lease, createRevision: createRevision, among: entries).isEmpty
    }

    /// The keys ahead of the key created at `createRevision` that keep it waiting: those of other
    /// leases, older, and in conflict with `mode`.
    public static func blockers(mode: LockMode, lease: Int64, createRevision: Int64, among entries: [Entry]) -> [Entry]
    {
        entries.filter { entry in
            entry.createRevision < createRevision && entry.key.lease != lease
                && (mode == .exclusive || entry.key.mode == .exclusive)
        }
    }

    /// Whether a key of another lease that conflicts with `mode` waits behind the key created at
    /// `createRevision`: then this node should let its key go once its admitted waiters are served.
    public func isWaitedFor(_ lock: LockName, mode: LockMode, lease: Int64, createRevision: Int64) -> Bool {
        entries(of: lock).contains { entry in
            entry.createRevision > createRevision && entry.key.lease != lease
                && (mode == .exclusive || entry.key.mode == .exclusive)
        }
    }

    /// Whether another lease has a key that conflicts with `mode` (a try-once acquire can be
    /// answered busy without asking the store).
    public func hasConflict(_ lock: LockName, mode: LockMode, lease: Int64?) -> Bool {
        entries(of: lock).contains { entry in
            entry.key.lease != lease && (mode == .exclusive || entry.key.mode == .exclusive)
        }
    }
}
