import DequeModule

extension LockTable {
    /// One owner's hold on one lock.
    struct Hold {
        var owner: LockOwner
        var mode: LockMode
        var count: Int
        var fence: UInt64
        var since: Double
        var shieldDepth: Int
        var pendingRevocation: RevocationReason?
        /// The connection that made the hold: it is told about revocations.
        var origin: SessionID
        var creator: ClientIdentity
    }

    /// One queued acquire.
    struct Waiter {
        var key: RequestKey
        var owner: LockOwner
        var mode: LockMode
        var isUpgrade: Bool
        var since: Double
        var requester: ClientIdentity
        var ttl: Double?
        var deadlineNanos: UInt64?
    }

    struct LockRecord {
        var holders: [Hold] = []
        var waiters: Deque<Waiter> = []
        var fence: UInt64 = 0
        /// Whether a pid or token hold was ever on this record, so its changes are journaled.
        var hadDurableHold = false
        /// For a lock shared through a cluster store: what this node may grant (`nil`: a local lock).
        var gate: ClusterGate?
        /// For a cluster lock: the fence of its next hold, from the store's revision.
        var fenceBase: UInt64?
        /// For a cluster lock: the last fence the node's key may give; past it the node needs a
        /// new key (a later revision) before anyone here gets a new hold.
        var fenceLimit: UInt64?

        /// Whether a new hold can get a fence (a cluster key's range may be used up).
        var hasFence: Bool {
            guard let fenceBase, let fenceLimit else { return true }
            return fenceBase <= fenceLimit
        }

        /// Whether the cluster lets a new hold in `mode` be granted (always, for a local lock).
        func permits(_ mode: LockMode, waiter: RequestKey?) -> Bool {
            gate?.permits(mode, waiter: waiter) ?? true
        }

        /// The fence a new hold would get: the cluster's next one, or the daemon's counter's.
        func nextFence(after lastFence: UInt64) -> UInt64 { fenceBase ?? lastFence + 1 }

        /// Whether the cluster lets a sole shared holder become exclusive.
        var permitsUpgrade: Bool { gate.map { $0.allows == .exclusive } ?? true }

        func holderIndex(of owner: LockOwner) -> Int? {
            holders.firstIndex { $0.owner == owner }
        }

        /// Nobody holds or waits, and (for a cluster lock) the node holds no granted key, whose
        /// fence counter the record keeps.
        var isUnused: Bool { holders.isEmpty && waiters.isEmpty && gate?.allows == nil }

        /// The effective mode of the lock: exclusive if any hold is.
        var mode: LockMode? {
            if holders.isEmpty { return nil }
            return holders.contains { $0.mode == .exclusive } ? .exclusive : .shared
        }
    }

    struct Lease {
        var ttl: Double
        var deadlineNanos: UInt64?
        var expiresAt: Double?
        var uid: UInt32
    }
}
