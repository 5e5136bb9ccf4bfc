import DequeModule

/// A snapshot of one lock for `status`.
public struct LockStatus: Sendable, Hashable {
    /// One holder of the lock.
    public struct Holder: Sendable, Hashable {
        /// Who owns the hold.
        public var owner: LockOwner
        /// The owner's pid for pid owners, else the pid of the client that made the hold.
        public var pid: Int32
        /// The uid of the client that made the hold.
        public var uid: UInt32
        /// The re-entrance count.
        public var count: Int
        /// The hold's mode.
        public var mode: LockMode
        /// The hold's fence.
        public var fence: UInt64
        /// When the hold was first granted (seconds since the epoch).
        public var since: Double
        /// The shield depth (0 when none is open).
        public var shielded: Int
        /// When a token owner's lease ends (seconds since the epoch), `nil` for other owners.
        public var expires: Double?
        /// A revocation (break, lease expiry) that waits for the hold's shield to close.
        public var deferred: RevocationReason?
    }

    /// One queued acquire.
    public struct Waiter: Sendable, Hashable {
        /// Who will own the hold.
        public var owner: LockOwner
        /// The owner's pid for pid owners, else the pid of the client that asked.
        public var pid: Int32
        /// The uid of the client that asked.
        public var uid: UInt32
        /// The mode asked for (an upgrade asks for exclusive).
        public var mode: LockMode
        /// When the wait began (seconds since the epoch).
        public var since: Double
    }

    /// The lock's name.
    public var name: LockName
    /// The lock's effective mode.
    public var mode: LockMode
    /// The latest fence the lock gave.
    public var fence: UInt64
    /// The holders, in grant order.
    public var holders: [Holder]
    /// The waiters, in queue order.
    public var waiters: [Waiter]
}

extension LockTable {
    /// The state of one lock (empty when it is free) or of all locks, sorted by name.
    public func status(of name: LockName? = nil) -> [LockStatus] {
        let names = name.map { [$0] } ?? locks.keys.sorted()
        return names.compactMap { name in
            // A cluster lock may have waiters here and its holders on other nodes.
            guard let record = locks[name], let mode = record.mode ?? record.waiters.first?.mode else { return nil }
            return LockStatus(
                name: name, mode: mode, fence: record.fence,
                holders: record.holders.map { hold in
                    var expires: Double?
                    if case .token(let token) = hold.owner { expires = leases[token]?.expiresAt }
                    return LockStatus.Holder(
                        owner: hold.owner, pid: Self.displayPid(hold.owner, hold.creator), uid: hold.creator.uid,
                        count: hold.count, mode: hold.mode, fence: hold.fence, since: hold.since,
                        shielded: hold.shieldDepth, expires: expires, deferred: hold.pendingRevocation)
                },
                waiters: record.waiters.map { waiter in
                    LockStatus.Waiter(
                        owner: waiter.owner, pid: Self.displayPid(waiter.owner, waiter.requester),
                        uid: waiter.requester.uid, mode: waiter.mode, since: waiter.since)
                })
        }
    }

    private static func displayPid(_ owner: LockOwner, _ client: ClientIdentity) -> Int32 {
        if case .pid(let pid) = owner { return pid }
        return client.pid
    }
}

extension LockTable {
    /// The owners holding or waiting for `name`, holders first.
    public func owners(of name: LockName) -> [LockOwner] {
        guard let record = locks[name] else { return [] }
        return record.holders.map(\.owner) + record.waiters.map(\.owner)
    }
}

extension LockTable {
    /// The locks changed since the last call, sorted by name (only while
    /// ``notesChangesForWatchers`` is on).
    public mutating func takeWatchedChanges() -> [LockName] {
        guard !watchedChanges.isEmpty else { return [] }
        defer { watchedChanges.removeAll(keepingCapacity: true) }
        return watchedChanges.sorted()
    }
}
