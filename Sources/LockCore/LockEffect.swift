/// Why a hold was taken away from its owner.
public enum RevocationReason: String, Sendable, Hashable {
    /// Someone asked to `break` the lock.
    case `break`
    /// The owner's token lease ran out.
    case expired
    /// This node lost its cluster store (it could not renew its lease in time): the store may
    /// give the lock to another node. A shield cannot defer it (docs/cluster.md).
    case lost
}

/// A grant: what an acquire answers.
public struct Grant: Sendable, Hashable {
    /// The lock granted.
    public var lock: LockName
    /// The mode the hold now has (an upgraded or re-entered hold may be stronger than asked).
    public var mode: LockMode
    /// The re-entrance count after this grant.
    public var count: Int
    /// The fencing token of this hold.
    public var fence: UInt64
    /// For a token owner: when its lease now ends (seconds since the epoch), which may be sooner
    /// than asked when lockd shortened the lease (`limits.max_ttl`).
    public var expires: Double?

    /// Creates a grant.
    public init(lock: LockName, mode: LockMode, count: Int, fence: UInt64, expires: Double? = nil) {
        self.lock = lock
        self.mode = mode
        self.count = count
        self.fence = fence
        self.expires = expires
    }
}

/// Something the I/O layer must do after the engine changed state.
public enum LockEffect: Sendable, Hashable {
    /// Answer a pending acquire with a grant.
    case granted(RequestKey, Grant)
    /// Answer a pending acquire with an error (timeout, cancelled, shutting_down).
    case failed(RequestKey, LockError)
    /// Tell the connection that made a hold that it was taken away.
    case revoked(session: SessionID, lock: LockName, owner: LockOwner, reason: RevocationReason)
    /// A token's lease now ends at this monotonic time: arm a timer that calls
    /// ``LockTable/expireLease(_:now:effects:)``.
    case leaseDeadline(token: String, uptimeNanos: UInt64)
    /// The owner holds and waits for nothing any more: stop watching its process.
    case ownerIdle(LockOwner)
}

/// What an acquire did at once.
public enum AcquireOutcome: Sendable, Hashable {
    /// Granted without waiting.
    case granted(Grant)
    /// Queued; the answer comes later as an effect. With a deadline, arm a timer that calls
    /// ``LockTable/timeOut(_:now:effects:)``.
    case queued(deadlineNanos: UInt64?)
}
