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
            send(Response.error(error.id, error.error), to: session)
            return
        }
        let reply: [(key: String, value: JSONValue)]?
        do {
            reply = try perform(request.operation, id: request.id, session: session)
        } catch {
            applyEffects()
            send(Response.error(request.id, error), to: session)
            return
        }
        // Effects first: a cancelled acquire answers before the cancel that cancelled it.
        applyEffects()
        if let reply { send(Response.ok(request.id, reply), to: session) }
        checkShutdownProgress()
    }

    /// Performs one operation; `nil` means the answer comes later (a queued acquire).
    private func perform(
        _ operation: Operation, id: RequestID, session: Session
    ) throws(LockError) -> [(key: String, value: JSONValue)]? {
        let now = Self.now()
        switch operation {
        case .hello:
            return [("server", .string(Self.serverName)), ("protocol", 1), ("session", .string("\(session.id)"))]
        case .ping:
            return []
        case .acquire(let lock, let mode, let wait, let spec):
            guard !isShuttingDown else { throw .shuttingDown() }
            let owner = try resolve(spec, for: session, claiming: true)
            reapExitedOwners(of: lock)
            var ttl: Double?
            if case .token(_, let requested) = spec {
                ttl = configuration.limits.effectiveTTL(requested)
                guard ttl != nil else { throw .invalid("a token owner needs \"ttl\" (seconds, > 0) to acquire") }
            }
            let wait = configuration.limits.effectiveWait(wait)
            let key = session.key(id)
            let outcome: AcquireOutcome
            do {
                outcome = try table.acquire(
                    lock, mode: mode, owner: owner, wait: wait, ttl: ttl, request: key,
                    requester: session.requester, now: now, effects: &effects)
            } catch {
                if case .pid(let pid) = owner, !table.isActive(owner) { watchers.removeValue(forKey: pid)?.stop() }
                throw error
            }
            switch outcome {
            case .granted(let grant):
                logger.debug(
                    "granted",
                    metadata: [
                        "lock_name": "\(grant.lock)", "lock_fence": "\(grant.fence)", "session": "\(session.id)",
                    ])
                return Response.grant(grant)
            case .queued(let deadline):
                var timer: Scheduled<Void>?
                if let deadline {
                    let bound = self.bound
                    timer = loop.scheduleTask(deadline: .uptimeNanoseconds(deadline)) {
                        bound.value.waiterTimerFired(key)
                    }
                }
                session.pending[key.tag] = Session.PendingAcquire(id: id, timer: timer)
                return nil
            }
        case .release(let lock, let spec, let all):
            let owner = try resolve(spec, for: session, claiming: false)
            let left = try table.release(
                lock, owner: owner, all: all, requester: session.requester, now: now, effects: &effects)
            return [("count", .int(Int64(left)))]
        case .renew(let token, let ttl):
            let expires = try table.renew(
                token: token, ttl: configuration.limits.effectiveTTL(ttl) ?? ttl, requester: session.requester,
                now: now, effects: &effects)
            return [("expires", .string(Timestamp.format(expires)))]
        case .shield(let lock, let spec, let on):
            let owner = try resolve(spec, for: session, claiming: false)
            let depth = try table.shield(
                lock, owner: owner, on: on, requester: session.requester, now: now, effects: &effects)
            return [("depth", .int(Int64(depth)))]
        case .breakLock(let lock):
            let result = try table.breakLock(lock, requester: session.requester, now: now, effects: &effects)
            logger.notice(
                "lock broken",
                metadata: [
                    "lock_name": "\(lock)", "client_pid": "\(session.identity.pid)",
                    "client_uid": "\(session.identity.uid)", "released": "\(result.released)",
                    "deferred": "\(result.deferred)",
                ])
            return [("released", .int(Int64(result.released))), ("deferred", .int(Int64(result.deferred)))]
        case .status(let lock):
            for pid in Array(watchers.keys) { reapIfExited(pid) }
            return [("locks", Response.locks(table.status(of: lock), commandLine: ProcFS.commandLine(of:)))]
        case .cancel(let request):
            guard table.cancel(session.key(request), now: now, effects: &effects) else {
                throw .invalid("no pending acquire with id \(request) on this connection")
            }
            return []
        }
    }

    /// A pid owner's exit reaches the loop a moment after the process is gone; a client that
    /// saw it exit and asks at once must not find its holds still there, so look now.
    private func reapExitedOwners(of lock: LockName) {
        for case .pid(let pid) in table.owners(of: lock) { reapIfExited(pid) }
    }

    private func reapIfExited(_ pid: Int32) {
        if let watcher = watchers[pid], watcher.hasExited { processExited(watcher) }
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
}
