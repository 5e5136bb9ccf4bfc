import LockCluster
import LockCore
import LockProtocol
import Logging
import NIOCore

/// This node's part in a cluster of lockd nodes that share locks through etcd (docs/cluster.md).
///
/// The local table keeps deciding among this node's owners (re-entrance, counts, FIFO, shields,
/// tokens, pid and session owners); the cluster only decides between nodes. For each shared lock
/// that some owner here holds or waits for, the node holds one key in etcd, attached to its one
/// lease; the key's place in etcd's create-revision order, read from a mirror of every lock key
/// kept by one watch, says when the node has the lock, and the table's ``ClusterGate`` lets local
/// grants through accordingly. Fences of a shared lock come from the granted key's revision.
///
/// The node keeps its own deadline: the send time of the last acknowledged keep-alive plus the
/// lease's ttl, less a margin. Past it, etcd may give the keys to other nodes, so every hold of a
/// shared lock is revoked (`lost`) first; the node then registers again with a new lease.
/// Confined to the service's loop.
final class ClusterLocks {
    let settings: ClusterSettings
    private let client: EtcdClient
    private let prefix: [UInt8]
    private let logger: Logger
    private unowned let service: LockService
    private var mirror: ClusterMirror
    private var membership = Membership.starting
    private var keys: [LockName: OwnKeys] = [:]
    /// Try-once acquires (`wait` 0) that wait for the answer of the key they made.
    private var tries: [LockName: Set<RequestKey>] = [:]
    private var watch: EtcdStream?
    private var keepAliveTimer: Scheduled<Void>?
    private var deadlineTimer: Scheduled<Void>?
    private var sequence: UInt64 = 0
    /// Since when each granted key that nobody here uses has been idle.
    private var idleSince: [LockName: NIODeadline] = [:]
    /// The timer that looks at idle keys again once they may have outlived ``idleLinger``.
    private var sweep: Scheduled<Void>?
    private var isStopped = false

    enum Membership {
        case starting
        case serving(lease: Int64, deadline: NIODeadline)
        case lost
    }

    /// This node's keys of one lock: at most one per mode (a shared key and, while upgrading, an
    /// exclusive one).
    struct OwnKeys {
        var exclusive: OwnKey?
        var shared: OwnKey?
        var all: [OwnKey] { [exclusive, shared].compactMap { $0 } }
        /// The granted key that allows the most: the exclusive one, else the shared one.
        var granted: OwnKey? {
            exclusive?.granted == true ? exclusive : shared?.granted == true ? shared : nil
        }
    }

    struct OwnKey {
        var key: ClusterKey
        /// Its create revision, once the transaction that made it has answered.
        var revision: Int64?
        var granted = false
    }

    init(settings: ClusterSettings, transport: any EtcdTransport, service: LockService, logger: Logger) {
        self.settings = settings
        self.client = EtcdClient(
            transport: transport, timeout: .nanoseconds(Seconds.signedNanoseconds(settings.requestTimeout)))
        self.prefix = Array(settings.prefix.utf8)
        self.mirror = ClusterMirror(prefix: prefix)
        self.service = service
        self.logger = logger
    }

    var loop: any EventLoop { client.loop }

    /// This node's lease while it serves.
    var lease: Int64? {
        if case .serving(let lease, _) = membership { return lease }
        return nil
    }

    /// Whether `name` is shared with the cluster.
    func isShared(_ name: LockName) -> Bool { settings.isShared(name) }

    // MARK: - Membership

    func start() {
        register()
        startWatch()
    }

    func stop() {
        isStopped = true
        keepAliveTimer?.cancel()
        deadlineTimer?.cancel()
        watch?.close()
        if let lease {
            // Frees this node's keys at once rather than at the lease's end.
            _ = client.revokeLease(lease)
        }
        membership = .lost
        let transport = client.transport
        loop.assumeIsolated().scheduleTask(in: .milliseconds(200)) { transport.shutdown() }
    }

    private func register() {
        guard !isStopped else { return }
        let sent = NIODeadline.now()
        client.grantLease(ttl: settings.leaseTTL).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let lease):
                let deadline = sent + .nanoseconds(Seconds.signedNanoseconds(Double(lease.ttl) - self.settings.margin))
                self.membership = .serving(lease: lease.id, deadline: deadline)
                self.logger.notice(
                    "joined the cluster", metadata: ["node": "\(self.settings.node)", "lease_ttl": "\(lease.ttl)"])
                self.armDeadline(deadline)
                self.scheduleKeepAlive(ttl: lease.ttl)
                self.service.endOfBurst()
            case .failure(let error):
                self.logger.warning("cannot register with etcd; trying again", metadata: ["error": "\(error)"])
                self.loop.assumeIsolated().scheduleTask(in: .seconds(1)) { self.register() }
            }
        }
    }

    private func scheduleKeepAlive(ttl: Int) {
        let period = TimeAmount.nanoseconds(Seconds.signedNanoseconds(max(0.1, Double(ttl) / 3)))
        keepAliveTimer = loop.assumeIsolated().scheduleTask(in: period) { self.keepAlive(ttl: ttl) }
    }

    private func keepAlive(ttl: Int) {
        guard case .serving(let lease, _) = membership else { return }
        let sent = NIODeadline.now()
        client.keepAlive(lease).assumeIsolated().whenComplete { result in
            guard case .serving(let current, let deadline) = self.membership, current == lease else { return }
            switch result {
            case .success(let left) where left > 0:
                let next = sent + .nanoseconds(Seconds.signedNanoseconds(Double(left) - self.settings.margin))
                if next > deadline {
                    self.membership = .serving(lease: lease, deadline: next)
                    self.armDeadline(next)
                }
            case .success:
                self.lose(because: "etcd no longer knows this node's lease")
                return
            case .failure(let error):
                // Another member may answer (the transport moved on): try again at once rather
                // than a third of the ttl later, while the deadline draws near.
                self.logger.warning("cannot renew the cluster lease", metadata: ["error": "\(error)"])
                self.keepAliveTimer = self.loop.assumeIsolated().scheduleTask(in: .milliseconds(50)) {
                    self.keepAlive(ttl: ttl)
                }
                return
            }
            self.scheduleKeepAlive(ttl: ttl)
        }
    }

    private func armDeadline(_ deadline: NIODeadline) {
        deadlineTimer?.cancel()
        deadlineTimer = loop.assumeIsolated().scheduleTask(deadline: deadline) { self.checkDeadline() }
    }

    /// Gives every hold up when the deadline has passed (also checked before each decision, since
    /// a stopped process runs its timers late).
    func checkDeadline() {
        guard case .serving(_, let deadline) = membership, NIODeadline.now() >= deadline else { return }
        lose(because: "the cluster lease could not be renewed in time")
    }

    private func lose(because reason: String) {
        guard case .serving(let lease, _) = membership else { return }
        logger.error("lost the cluster: every hold of a shared lock is revoked", metadata: ["reason": "\(reason)"])
        membership = .lost
        keepAliveTimer?.cancel()
        deadlineTimer?.cancel()
        keys = [:]
        idleSince = [:]
        let names = service.inspectTable { $0.clusterLockNames }
        service.mutate { table, now, effects in
            for name in names { table.loseCluster(name, now: now, effects: &effects) }
        }
        failTries(names, "this node lost its cluster store")
        _ = client.revokeLease(lease)
        service.endOfBurst()
        loop.assumeIsolated().scheduleTask(in: .milliseconds(500)) { self.register() }
    }

    // MARK: - The mirror

    private func startWatch() {
        guard !isStopped else { return }
        client.range(prefix: prefix).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let read):
                _ = self.mirror.reset(revision: read.revision, kvs: read.kvs)
                self.watch = self.client.watch(
                    prefix: self.prefix, from: read.revision + 1,
                    onEvents: { events, revision in
                        self.mirror.apply(events, revision: revision)
                        self.service.endOfBurst()
                    },
                    onEnd: { end in
                        self.logger.info("the cluster watch ended; starting again", metadata: ["end": "\(end)"])
                        self.loop.assumeIsolated().scheduleTask(in: .milliseconds(100)) { self.startWatch() }
                    })
                self.service.endOfBurst()
            case .failure(let error):
                self.logger.warning("cannot read the cluster's locks; trying again", metadata: ["error": "\(error)"])
                self.loop.assumeIsolated().scheduleTask(in: .milliseconds(500)) { self.startWatch() }
            }
        }
    }

    // MARK: - Keys

    /// Brings this node's keys and the table's gates in line with what its owners hold and wait
    /// for. Called at the end of every burst of requests and events.
    func reconcile() {
        checkDeadline()
        guard let lease else { return }
        let names = Set(service.inspectTable { $0.clusterLockNames }).union(keys.keys)
        for name in names { reconcile(name, lease: lease) }
    }

    private func reconcile(_ name: LockName, lease: Int64) {
        let demand = service.inspectTable { $0.clusterDemand(of: name) }
        var gate = service.inspectTable { $0.gate(of: name) } ?? ClusterGate()
        var own = keys[name] ?? OwnKeys()
        // Served everyone it admitted before another node's key: let that node in.
        if gate.admitted != nil, demand.holders == 0, demand.admittedWaiters == 0 {
            own.all.forEach(delete)
            own = OwnKeys()
            gate = ClusterGate()
            service.mutate { table, now, effects in
                table.setGate(name, gate, fenceBase: nil, now: now, effects: &effects)
            }
        }
        guard let wanted = demand.mode else {
            if keepsIdle(name, own, lease: lease) {
                keys[name] = own
                return
            }
            idleSince[name] = nil
            own.all.forEach(delete)
            keys[name] = nil
            if service.inspectTable({ $0.gate(of: name) }) != nil {
                service.mutate { table, now, effects in
                    table.setGate(name, ClusterGate(), fenceBase: nil, now: now, effects: &effects)
                }
            }
            return
        }
        idleSince[name] = nil
        if wanted == .exclusive, own.exclusive == nil { own.exclusive = create(name, .exclusive, lease: lease) }
        if wanted == .shared, own.exclusive == nil, own.shared == nil {
            own.shared = create(name, .shared, lease: lease)
        }
        for mode in [LockMode.exclusive, .shared] {
            guard var key = mode == .exclusive ? own.exclusive : own.shared, !key.granted, let revision = key.revision,
                mirror.isGranted(name, mode: mode, lease: lease, createRevision: revision) == true
            else { continue }
            key.granted = true
            tries[name] = nil
            if mode == .exclusive { own.exclusive = key } else { own.shared = key }
        }
        if own.exclusive?.granted == true, let shared = own.shared {
            delete(shared)
            own.shared = nil
        }
        keys[name] = own
        let granted = own.granted
        var next = ClusterGate(allows: granted?.key.mode, admitted: gate.admitted)
        if let granted, let revision = granted.revision, next.admitted == nil,
            mirror.isWaitedFor(name, mode: granted.key.mode, lease: lease, createRevision: revision)
        {
            next.admitted = service.inspectTable { $0.waiterKeys(of: name) }
        }
        // The key has given all its fences: nobody more under it; once its holders are done the
        // node lets it go and makes a new one (a later revision, higher fences).
        if granted != nil, !demand.fencesLeft, next.admitted == nil { next.admitted = [] }
        guard next != gate || (granted != nil && gate.allows != granted?.key.mode) else { return }
        // A key newly granted starts its fences at its revision: above every fence any node
        // handed out under an older key of this lock.
        let fenceBase = next.allows != gate.allows ? granted?.revision.map { UInt64($0) << Self.fenceBits } : nil
        service.mutate { table, now, effects in
            table.setGate(
                name, next, fenceBase: fenceBase, fenceLimit: fenceBase.map { $0 + (1 << Self.fenceBits) - 1 },
                now: now, effects: &effects)
        }
    }

    /// Whether to keep a granted key that nobody here uses any more, for ``idleLinger`` at most
    /// and only while no other node waits for it: an owner here that takes the lock again at once
    /// (a loop of acquire and release) then needs no etcd round trip. To another node the key
    /// looks held meanwhile, as if the release had come that much later.
    private func keepsIdle(_ name: LockName, _ own: OwnKeys, lease: Int64) -> Bool {
        guard let granted = own.granted, let revision = granted.revision,
            !mirror.isWaitedFor(name, mode: granted.key.mode, lease: lease, createRevision: revision)
        else { return false }
        let now = NIODeadline.now()
        let since = idleSince[name] ?? now
        idleSince[name] = since
        guard now - since < Self.idleLinger else { return false }
        if sweep == nil {
            sweep = loop.assumeIsolated().scheduleTask(in: Self.idleLinger) {
                self.sweep = nil
                self.service.endOfBurst()
            }
        }
        return true
    }

    /// A key's fences are its create revision shifted by this many bits, plus the grants made
    /// under it: 2^20 grants per key, revisions below 2^33 within 2^53.
    static let fenceBits: UInt64 = 20

    /// How long a granted key outlives its last local use (docs/cluster.md).
    static let idleLinger = TimeAmount.milliseconds(5)

    private func create(_ name: LockName, _ mode: LockMode, lease: Int64) -> OwnKey {
        sequence += 1
        let key = ClusterKey(lock: name, node: settings.node, lease: lease, sequence: sequence, mode: mode)
        let own = OwnKey(key: key)
        let path = key.path(under: prefix)
        let value = Array(#"{"node":"\#(settings.node)"}"#.utf8)
        let sequence = self.sequence
        client.create(key: path, value: value, lease: lease, alsoRange: ClusterKey.lockPrefix(name, under: prefix))
            .assumeIsolated().whenComplete { result in
                // Never from inside ``reconcile()``, even when the call failed at once.
                self.loop.assumeIsolated().execute {
                    self.created(name, mode, sequence: sequence, path: path, result: result)
                }
            }
        return own
    }

    private func created(
        _ name: LockName, _ mode: LockMode, sequence: UInt64, path: [UInt8],
        result: Result<EtcdClient.Created, any Error>
    ) {
        guard var own = keys[name], var key = mode == .exclusive ? own.exclusive : own.shared,
            key.key.sequence == sequence
        else {
            // No longer wanted: the key goes again (if the call failed, it may exist all the same).
            switch result {
            case .success(let created) where created.created:
                retire(ClusterKey(path: path, under: prefix), revision: created.revision)
            case .success: break
            case .failure: retire(ClusterKey(path: path, under: prefix), revision: nil)
            }
            return
        }
        switch result {
        case .success(let created) where created.created:
            key.revision = created.revision
            // The transaction's own range is the queue as of the key's creation.
            let entries = created.kvs.compactMap { kv in
                ClusterKey(path: kv.key, under: prefix).map {
                    ClusterMirror.Entry(key: $0, createRevision: kv.createRevision)
                }
            }
            let blockers = ClusterMirror.blockers(
                mode: mode, lease: key.key.lease, createRevision: created.revision, among: entries)
            key.granted = blockers.isEmpty
            if key.granted {
                tries[name] = nil
            } else {
                // The mirror may not have seen those keys yet; the transaction has.
                failTries([name], Self.busyMessage(name, nodes: blockers.map(\.key.node)))
            }
        case .success, .failure:
            logger.warning("cannot make a cluster key; trying again", metadata: ["lock_name": "\(name)"])
            // A call that timed out may have made the key all the same; left there, it would keep
            // every other node waiting.
            if case .failure = result { retire(key.key, revision: nil) }
            failTries([name], "this node could not reach its cluster store")
            if mode == .exclusive { own.exclusive = nil } else { own.shared = nil }
            keys[name] = own
            loop.assumeIsolated().scheduleTask(in: .milliseconds(200)) { self.service.endOfBurst() }
            return
        }
        if mode == .exclusive { own.exclusive = key } else { own.shared = key }
        keys[name] = own
        service.endOfBurst()
    }

    /// Deletes a key whose creation has been answered (one still being made goes when its answer
    /// comes and finds it unwanted).
    private func delete(_ own: OwnKey) {
        guard let revision = own.revision else { return }
        retire(own.key, revision: revision)
    }

    /// Deletes one of this node's keys, and keeps trying while the lease it was made under is
    /// this node's: a key left behind would keep every other node waiting (once the lease goes,
    /// etcd deletes the key with it). With its create revision the delete is guarded; without
    /// (its creation was never answered) it is not, which is safe because no one else ever
    /// writes that path.
    private func retire(_ key: ClusterKey?, revision: Int64?) {
        guard let key else { return }
        let path = key.path(under: prefix)
        let deleted =
            revision.map { client.delete(key: path, createRevision: $0).map { _ in } } ?? client.delete(key: path)
        deleted.assumeIsolated().whenFailure { _ in
            guard self.lease == key.lease else { return }
            self.loop.assumeIsolated().scheduleTask(in: .milliseconds(200)) { self.retire(key, revision: revision) }
        }
    }

    // MARK: - Acquires that do not wait

    /// Whether a try-once acquire of `name` is busy without asking etcd: another node has a key
    /// that conflicts, or this node is not connected.
    func isBusyWithoutAsking(_ name: LockName, mode: LockMode) -> String? {
        guard let lease else { return "lock \"\(name)\" is shared with the cluster, which this node cannot reach" }
        guard mirror.hasConflict(name, mode: mode, lease: lease) else { return nil }
        return Self.busyMessage(name, nodes: mirror.entries(of: name).filter { $0.key.lease != lease }.map(\.key.node))
    }

    private static func busyMessage(_ name: LockName, nodes: [String]) -> String {
        "lock \"\(name)\" is held or awaited on node \(Set(nodes).sorted().joined(separator: ", "))"
    }

    /// A try-once acquire that waits for the answer about this node's key.
    func waitsForAnswer(_ key: RequestKey, on name: LockName) { tries[name, default: []].insert(key) }

    private func failTries(_ names: some Sequence<LockName>, _ reason: String) {
        for name in names {
            guard let waiting = tries.removeValue(forKey: name) else { continue }
            service.mutate { table, now, effects in
                for key in waiting { table.cancel(key, reason: reason, code: .busy, now: now, effects: &effects) }
            }
        }
    }

    // MARK: - Status

    /// Other nodes' keys of `name`: granted ones as holders, the rest as waiters.
    func remoteEntries(of name: LockName) -> (
        holders: [(node: String, mode: LockMode, fence: UInt64)], waiters: [(node: String, mode: LockMode)]
    ) {
        let lease = self.lease
        var holders: [(String, LockMode, UInt64)] = []
        var waiters: [(String, LockMode)] = []
        let entries = mirror.entries(of: name)
        for entry in entries where entry.key.lease != lease {
            let granted = ClusterMirror.isGranted(
                mode: entry.key.mode, lease: entry.key.lease, createRevision: entry.createRevision, among: entries)
            if granted {
                holders.append((entry.key.node, entry.key.mode, UInt64(entry.createRevision) << 20))
            } else {
                waiters.append((entry.key.node, entry.key.mode))
            }
        }
        return (holders, waiters)
    }

    /// Shared locks other nodes hold or wait for.
    var remoteLockNames: [LockName] { mirror.lockNames }
}
