/// What this node may grant of a lock it shares with other lockd nodes through a cluster store:
/// what its keys in the store allow right now (docs/cluster.md). The table's own rules (FIFO,
/// modes, re-entrance) apply within it.
public struct ClusterGate: Sendable, Hashable {
    /// The strongest mode this node's granted keys allow: `nil` for none (no granted key),
    /// `.shared` for a granted shared key, `.exclusive` for a granted exclusive key (any mode).
    public var allows: LockMode?
    /// When set, another node waits behind this node's key: only these waiters (queued before it
    /// came) may still be granted, and no acquire is granted at once, so that the node lets its
    /// key go once they are served.
    public var admitted: Set<RequestKey>?

    public init(allows: LockMode? = nil, admitted: Set<RequestKey>? = nil) {
        self.allows = allows
        self.admitted = admitted
    }

    /// Whether a new hold in `mode` may be granted; `waiter` is the queued request, or `nil` for
    /// an acquire that would be granted at once.
    func permits(_ mode: LockMode, waiter: RequestKey?) -> Bool {
        switch allows {
        case nil: return false
        case .shared?: if mode == .exclusive { return false }
        case .exclusive?: break
        }
        guard let admitted else { return true }
        return waiter.map(admitted.contains) ?? false
    }
}

extension LockTable {
    /// What this node's owners want of a lock, for the cluster layer to hold keys for.
    public struct ClusterDemand: Sendable, Equatable {
        /// The strongest mode held or waited for; `nil` when nobody here holds or waits.
        public var mode: LockMode?
        /// Holds of this node's owners.
        public var holders: Int
        /// Waiters that the gate still admits and can reach (the admitted run at the head of the
        /// queue; all of them when it admits every waiter).
        public var admittedWaiters: Int
        /// Whether the node's key may still give fences (else it needs a new key).
        public var fencesLeft = true
    }

    /// The gate of `name`; `nil` for a local lock or a lock nobody here holds or waits for.
    public func gate(of name: LockName) -> ClusterGate? { locks[name]?.gate }

    /// What this node's owners hold and wait for of `name`.
    public func clusterDemand(of name: LockName) -> ClusterDemand {
        guard let record = locks[name] else { return ClusterDemand(mode: nil, holders: 0, admittedWaiters: 0) }
        let modes = record.holders.map(\.mode) + record.waiters.map(\.mode)
        let mode: LockMode? = modes.isEmpty ? nil : modes.contains(.exclusive) ? .exclusive : .shared
        let admitted = record.gate?.admitted
        // An admitted waiter behind one that is not (an upgrade goes to the head) cannot be served
        // under this key: it counts as not admitted, so the node lets the key go.
        let waiters =
            admitted.map { set in record.waiters.prefix { set.contains($0.key) }.count } ?? record.waiters.count
        return ClusterDemand(
            mode: mode, holders: record.holders.count, admittedWaiters: waiters, fencesLeft: record.hasFence)
    }

    /// Changes what the cluster lets this node grant of `name` and grants what it now can. A lock
    /// whose gate allows something keeps its record (and its fence counter) while nobody holds
    /// it; a closed gate lets an idle record go.
    /// - Parameters:
    ///   - fenceBase: the fence of the next hold of `name` (fences of a cluster lock come from the
    ///     store's revisions, so they grow across every node); `nil` keeps the current one.
    ///   - fenceLimit: with `fenceBase`, the last fence this key may give: once it is used, no new
    ///     hold is granted until a new key brings a new base.
    public mutating func setGate(
        _ name: LockName, _ gate: ClusterGate, fenceBase: UInt64?, fenceLimit: UInt64? = nil, now: Moment,
        effects: inout [LockEffect]
    ) {
        guard var record = locks[name] else { return }
        record.gate = gate
        if let fenceBase {
            record.fenceBase = fenceBase
            record.fenceLimit = fenceLimit
        }
        dispatch(&record, name: name, now: now, effects: &effects)
        store(record, as: name)
    }

    /// This node lost the cluster store: every hold of `name` goes at once with reason `lost`,
    /// shielded or not (the store will not wait for a shield), and the gate closes; waiters stay
    /// queued for when the node is back.
    public mutating func loseCluster(_ name: LockName, now: Moment, effects: inout [LockEffect]) {
        guard var record = locks[name] else { return }
        var owners: [LockOwner] = []
        for index in record.holders.indices.reversed() {
            owners.append(record.holders[index].owner)
            revoke(&record, at: index, name: name, reason: .lost, effects: &effects)
        }
        record.gate = ClusterGate()
        record.fenceBase = nil
        record.fenceLimit = nil
        store(record, as: name)
        for owner in owners { forgetIfIdle(owner, effects: &effects) }
    }

    /// The requests waiting for `name`, in queue order.
    public func waiterKeys(of name: LockName) -> Set<RequestKey> { Set(locks[name]?.waiters.map(\.key) ?? []) }

    /// The names whose records have a gate: the cluster locks this node holds or waits for.
    public var clusterLockNames: [LockName] { locks.compactMap { $0.value.gate == nil ? nil : $0.key } }
}
