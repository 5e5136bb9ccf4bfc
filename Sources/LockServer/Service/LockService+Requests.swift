import LockCore
import LockProtocol
import Logging
import NIOCore

extension LockService {
    /// Answers one request line.
    func handle(line: some Collection<UInt8>, from session: Session) {
        let request: Request
        do {
            request = try Request.decode(line)
        } catch {
            metrics.failed(error.error.code)
            connections.send(Response.error(error.id, error.error), to: session)
            return
        }
        if logger.logLevel <= .debug {
            // Written before the request is handled: a crash leaves it as its last trace
            // (docs/operations.md).
            logger.debug("request", metadata: ["session": "\(session.id)", "request": "\(request.operation)"])
        }
        do {
            // Effects first (``mutate(_:)`` performs them): a cancelled acquire answers before the
            // cancel that cancelled it.
            if let reply = try perform(request.operation, id: request.id, session: session) {
                connections.send(Response.ok(request.id, reply), to: session)
            }
        } catch {
            metrics.failed(error.code)
            connections.send(Response.error(request.id, error), to: session)
            return
        }
        checkShutdownProgress()
    }

    /// Performs one operation; `nil` means the answer comes later (a queued acquire).
    private func perform(
        _ operation: Operation, id: RequestID, session: Session
    ) throws(LockError) -> [(key: String, value: JSONValue)]? {
        switch operation {
        case .hello:
            var fields: [(key: String, value: JSONValue)] = [
                ("server", .string(Self.serverName)), ("protocol", 1), ("session", .string("\(session.id)")),
                ("backend", cluster == nil ? "local" : "etcd"),
            ]
            if let cluster { fields.append(("node", .string(cluster.settings.node))) }
            return fields
        case .ping:
            return []
        case .acquire(let lock, let mode, let wait, let spec):
            return try acquire(lock, mode: mode, wait: wait, spec: spec, id: id, session: session)
        case .release(let lock, let spec, let all):
            let owner = try resolve(spec, for: session, claiming: false)
            let left = try mutate { table, now, effects throws(LockError) in
                try table.release(
                    lock, owner: owner, all: all, requester: session.requester, now: now, effects: &effects)
            }
            metrics.released()
            return [("count", .int(Int64(left)))]
        case .renew(let token, let ttl):
            let ttl = configuration.limits.effectiveTTL(ttl) ?? ttl
            let expires = try mutate { table, now, effects throws(LockError) in
                try table.renew(token: token, ttl: ttl, requester: session.requester, now: now, effects: &effects)
            }
            return [("expires", .string(Timestamp.format(expires)))]
        case .shield(let lock, let spec, let on):
            let owner = try resolve(spec, for: session, claiming: false)
            let depth = try mutate { table, now, effects throws(LockError) in
                try table.shield(
                    lock, owner: owner, on: on, requester: session.requester, now: now, effects: &effects)
            }
            return [("depth", .int(Int64(depth)))]
        case .breakLock(let lock):
            try authorize(.breakLock, lock, session)
            let result = try mutate { table, now, effects throws(LockError) in
                try table.breakLock(lock, requester: session.requester, now: now, effects: &effects)
            }
            logger.notice(
                "lock broken",
                metadata: [
                    "lock_name": "\(lock)", "client_pid": "\(session.identity.pid)",
                    "client_uid": "\(session.identity.uid)", "released": "\(result.released)",
                    "deferred": "\(result.deferred)",
                ])
            return [("released", .int(Int64(result.released))), ("deferred", .int(Int64(result.deferred)))]
        case .status(let lock):
            if let lock { try authorize(.status, lock, session) }
            owners.reapAll()
            return [("locks", statusJSON(only: lock, for: session))]
        case .metrics:
            return [("text", .string(metricsText()))]
        case .watch(let lock):
            if let lock { try authorize(.status, lock, session) }
            owners.reapAll()
            try startWatching(session, lock: lock)
            return [("locks", statusJSON(only: lock, for: session))]
        case .cancel(let request):
            let cancelled = mutate { table, now, effects in
                table.cancel(session.key(request), now: now, effects: &effects)
            }
            guard cancelled else { throw .invalid("no pending acquire with id \(request) on this connection") }
            return []
        }
    }

    private func acquire(
        _ lock: LockName, mode: LockMode, wait: Double?, spec: OwnerSpec, id: RequestID, session: Session
    ) throws(LockError) -> [(key: String, value: JSONValue)]? {
        guard !isShuttingDown else { throw .shuttingDown() }
        try authorize(.acquire, lock, session)
        let owner = try resolve(spec, for: session, claiming: true)
        reapExitedOwners(of: lock)
        var ttl: Double?
        if case .token(_, let requested) = spec {
            ttl = configuration.limits.effectiveTTL(requested)
            guard ttl != nil else { throw .invalid("a token owner needs \"ttl\" (seconds, > 0) to acquire") }
        }
        let key = session.key(id)
        let outcome: AcquireOutcome
        // A lock shared with the cluster starts closed here until this node's key is granted.
        let shared = cluster.map { $0.isShared(lock) } ?? false
        let gate: ClusterGate? = shared ? ClusterGate() : nil
        do throws(LockError) {
            try checkHoldLimit(lock, owner: owner, session: session)
            // At a waiting limit the acquire may still be granted at once; it just may not wait.
            let waitLimit = waitingLimit(of: session)
            let wait = waitLimit == nil ? configuration.limits.effectiveWait(wait) : 0
            do throws(LockError) {
                outcome = try mutate { table, now, effects throws(LockError) in
                    try table.acquire(
                        lock, mode: mode, owner: owner, wait: wait, ttl: ttl, request: key,
                        requester: session.requester, now: now, effects: &effects, gate: gate)
                }
            } catch  where error.code == .busy && waitLimit != nil {
                throw LockError(.limit, "lock \"\(lock)\" is held and \(waitLimit!)")
            } catch  where error.code == .busy && wait == 0 && shared {
                outcome = try tryThroughCluster(
                    lock, mode: mode, owner: owner, ttl: ttl, key: key, session: session, gate: gate, busy: error)
            }
        } catch {
            if case .pid(let pid) = owner, !table.isActive(owner) { owners.stopWatching(pid) }
            throw error
        }
        switch outcome {
        case .granted(let grant):
            metrics.grantedAtOnce()
            logger.debug(
                "granted",
                metadata: ["lock_name": "\(grant.lock)", "lock_fence": "\(grant.fence)", "session": "\(session.id)"])
            return Response.grant(grant)
        case .queued(let deadline):
            noteQueued(key)
            if let deadline { owners.armWait(key, deadline: deadline) }
            session.pending[key.tag] = id
            return nil
        }
    }

    /// A try-once acquire of a shared lock that nobody here holds or waits for: busy at once when
    /// another node has a conflicting key; else it waits for the answer about this node's own
    /// key (granted, or busy when an older key conflicts).
    private func tryThroughCluster(
        _ lock: LockName, mode: LockMode, owner: LockOwner, ttl: Double?, key: RequestKey, session: Session,
        gate: ClusterGate?, busy: LockError
    ) throws(LockError) -> AcquireOutcome {
        guard let cluster else { throw busy }
        let demand = inspectTable { $0.clusterDemand(of: lock) }
        guard demand.holders == 0, demand.admittedWaiters == 0 else { throw busy }
        if let why = cluster.isBusyWithoutAsking(lock, mode: mode) { throw LockError(.busy, why) }
        let answerWithin = 2 * cluster.settings.requestTimeout + 1
        let outcome = try mutate { table, now, effects throws(LockError) in
            try table.acquire(
                lock, mode: mode, owner: owner, wait: answerWithin, ttl: ttl, request: key,
                requester: session.requester, now: now, effects: &effects, gate: gate)
        }
        if case .queued = outcome { cluster.waitsForAnswer(key, on: lock) }
        return outcome
    }

    /// What `status` lists: `lock` alone, or every lock `session` may see.
    func statusJSON(only lock: LockName?, for session: Session?) -> JSONValue {
        var locks = inspectTable { $0.status(of: lock) }
        if lock == nil, let session, !session.identity.isRoot, !configuration.access.rules.isEmpty {
            locks.removeAll { !allows(.status, $0.name, session) }
        }
        let json = Response.locks(locks, commandLine: owners.processes.commandLine(of:))
        guard let cluster else { return json }
        return withClusterView(json, cluster: cluster, only: lock)
    }

    /// Whether `session` may see `lock` in `status`, and so in its watch's events.
    func maySee(_ lock: LockName, _ session: Session) -> Bool {
        session.identity.isRoot || configuration.access.rules.isEmpty || allows(.status, lock, session)
    }

    private func allows(_ action: AccessPolicy.Action, _ lock: LockName, _ session: Session) -> Bool {
        configuration.access.allows(action, lock: lock, identity: session.identity) { session.groups }
    }

    private func authorize(_ action: AccessPolicy.Action, _ lock: LockName, _ session: Session) throws(LockError) {
        let limit = configuration.limits.maxNameBytes
        guard lock.rawValue.utf8.count <= limit else {
            throw .invalid("lock names are at most \(limit) bytes here (limits.max_name_bytes)")
        }
        guard allows(action, lock, session) else {
            throw .denied("uid \(session.identity.uid) may not \(action.rawValue) lock \"\(lock)\" (see [access])")
        }
    }

    /// Refuses a new hold beyond `limits.max_holds_per_uid`; a re-entrant acquire adds no hold.
    private func checkHoldLimit(_ lock: LockName, owner: LockOwner, session: Session) throws(LockError) {
        let uid = session.identity.uid
        let limit = configuration.limits.maxHoldsPerUID
        guard uid != 0, table.holdCount(uid: uid) >= limit, !table.holds(lock, owner: owner) else { return }
        throw LockError(.limit, "uid \(uid) already has \(limit) holds (limits.max_holds_per_uid)")
    }

    /// Why this client may not queue one more acquire, or `nil` when it may.
    private func waitingLimit(of session: Session) -> String? {
        let limits = configuration.limits
        if session.pending.count >= limits.maxPendingPerConnection {
            return "this connection already has \(limits.maxPendingPerConnection) waiting acquires "
                + "(limits.max_pending_per_connection)"
        }
        let uid = session.identity.uid
        if uid != 0, table.waiterCount(uid: uid) >= limits.maxWaitersPerUID {
            return "uid \(uid) already has \(limits.maxWaitersPerUID) waiting acquires (limits.max_waiters_per_uid)"
        }
        return nil
    }

    /// A pid owner's exit reaches the loop a moment after the process is gone; a client that
    /// saw it exit and asks at once must not find its holds still there, so look now.
    private func reapExitedOwners(of lock: LockName) {
        guard owners.isWatchingProcesses else { return }
        for case .pid(let pid) in inspectTable({ $0.owners(of: lock) }) { owners.reapIfExited(pid) }
    }

    private func resolve(_ spec: OwnerSpec, for session: Session, claiming: Bool) throws(LockError) -> LockOwner {
        switch spec {
        case .session: return .session(session.id)
        case .token(let token, _): return .token(token)
        case .pid(let pid):
            if claiming { try claim(pid: pid, for: session) }
            return .pid(pid)
        }
    }

    /// Checks that `session` may name `pid` as owner (itself, an ancestor with its uid, or any
    /// process for root) and makes sure the process is watched.
    private func claim(pid: Int32, for session: Session) throws(LockError) {
        owners.reapIfExited(pid)
        // Open the pidfd before checking ancestry: if the ancestor check passes afterwards, the
        // watch refers to that very process and not to a later one that reused its pid.
        var opened: (any ProcessWatch)?
        if !owners.isWatching(pid) {
            guard let watch = owners.open(pid) else { throw .invalid("no process with pid \(pid)") }
            opened = watch
        }
        let identity = session.identity
        let processes = owners.processes
        let allowed =
            identity.isRoot || pid == identity.pid
            || (processes.isSelfOrAncestor(pid, of: identity.pid) && processes.uid(of: pid) == identity.uid)
        guard allowed else {
            opened?.stop()
            throw .denied(
                "pid \(pid) is neither the client (pid \(identity.pid)) nor an ancestor of it with uid \(identity.uid)")
        }
        if let opened { owners.keep(opened) }
    }
}
