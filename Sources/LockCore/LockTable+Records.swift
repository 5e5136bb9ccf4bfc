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

        func holderIndex(of owner: LockOwner) -> Int? {
            holders.firstIndex { $0.owner == owner }
        }

        var isUnused: Bool { holders.isEmpty && waiters.isEmpty }

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
