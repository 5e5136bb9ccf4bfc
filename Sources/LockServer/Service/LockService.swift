import Glibc
import LockCluster
import LockCore
import LockProtocol
import Logging
import NIOCore

/// Serves the lock table to connections: request dispatch over the daemon's parts. Every
/// method runs on the one event loop that owns it, so the table needs no lock and every change
/// is seen in order (like Redis' single thread).
///
/// The parts own their state: ``Connections`` (sessions, queued answers), ``Persistence`` (the
/// journal, fences, group commit), ``OwnerWatch`` (pidfds, lease and wait timers) and
/// ``StatusReporter`` (sd_notify). The table changes only through ``mutate(_:)``, which performs
/// the engine's effects before it returns, so none can be forgotten.
final class LockService {
    static let serverName = "lockd \(lockdVersion)"

    /// Where the service is in its life; only a running service takes new acquires and shields.
    enum Lifecycle {
        case running
        /// Stopping: waiting for open shields, at most until the grace timer fires.
        case draining(grace: Scheduled<Void>?)
        case finished
    }

    let loop: any EventLoop
    let logger: Logger
    /// The settings in force; a reload replaces them (``apply(_:)``).
    private(set) var configuration: LockdConfiguration
    private(set) var table = LockTable()
    private(set) var lifecycle = Lifecycle.running
    let connections: Connections
    let persistence: Persistence
    let owners: OwnerWatch
    let reporter: StatusReporter
    /// This node's part in a cluster of lockd nodes, when it is one (`--backend etcd`).
    private(set) var cluster: ClusterLocks?
    /// The listening socket; it stays open until the service finishes, so that a client who comes
    /// during a stop hears `shutting_down` rather than finding no socket.
    var listener: (any Channel)?
    private let wallClock: () -> Double
    private let finished: EventLoopPromise<Void>
    /// The engine's effects, a buffer reused by every ``mutate(_:)``.
    private var effects: [LockEffect] = []
    /// Counters and timings for operators (`metrics` op, `[metrics] listen`).
    let metrics = LockdMetrics()
    /// When each queued acquire was queued (monotonic nanoseconds), for the wait-time histogram.
    private var queuedAt: [RequestKey: UInt64] = [:]
    /// The connections that watch (the `watch` op), each with the one lock it watches, or `nil`
    /// for all.
    private var watchers: [SessionID: LockName?] = [:]

    init(
        loop: any EventLoop, logger: Logger, configuration: LockdConfiguration, notifier: SystemdNotifier,
        processes: any ProcessMonitor = LinuxProcesses(), wallClock: @escaping () -> Double = LockService.realTime
    ) {
        self.loop = loop
        self.logger = logger
        self.configuration = configuration
        self.wallClock = wallClock
        self.finished = loop.makePromise()
        connections = Connections(logger: logger)
        let metrics = self.metrics
        persistence = Persistence(logger: logger, synced: { metrics.journalSynced(nanoseconds: $0) })
        owners = OwnerWatch(loop: loop, processes: processes)
        reporter = StatusReporter(loop: loop, notifier: notifier, logger: logger)
        owners.events = self
        reporter.summary = { [unowned self] in self.statusSummary }
    }

    /// Completes when the service has stopped.
    var finishedFuture: EventLoopFuture<Void> { finished.futureResult }

    /// A handle to this loop-confined service for `@Sendable` callbacks.
    var bound: NIOLoopBound<LockService> { NIOLoopBound(self, eventLoop: loop) }

    /// The wall clock (CLOCK_REALTIME) in seconds since the epoch.
    static func realTime() -> Double {
        var wall = timespec()
        clock_gettime(CLOCK_REALTIME, &wall)
        return Double(wall.tv_sec) + Double(wall.tv_nsec) / 1e9
    }

    /// Now, on the loop's monotonic clock (virtual on an embedded loop) and the wall clock.
    var now: Moment { Moment(uptimeNanos: loop.now.uptimeNanoseconds, unixTime: wallClock()) }

    var isShuttingDown: Bool {
        if case .running = lifecycle { return false }
        return true
    }

    // MARK: - The one way the table changes

    /// Changes the table and then performs every effect the change asked for (answers, events,
    /// timers, watches), also when the change throws.
    @discardableResult
    func mutate<Result, Failure: Error>(
        _ body: (inout LockTable, Moment, inout [LockEffect]) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        // Past its cluster deadline a node must give up its shared holds before it grants
        // anything: a paused process handles requests before its late timers.
        cluster?.checkDeadline()
        let started = now
        defer { applyEffects(started: started.uptimeNanos) }
        return try body(&table, started, &effects)
    }

    /// The metrics' exposition (Prometheus text format), with the sizes as they are now.
    func metricsText() -> String {
        metrics.text(locksHeld: table.heldLockCount, waiters: table.waiterCount, connections: connections.count)
    }

    /// Notes a queued acquire, for the wait time its grant records.
    func noteQueued(_ key: RequestKey) { queuedAt[key] = loop.now.uptimeNanoseconds }

    /// Reads the table where it lives. A non-mutating call straight on `table` first copies the
    /// whole struct out of this class, retaining and releasing each of its collections, which
    /// showed in profiles of the request path; through `inout` the call borrows it in place.
    func inspectTable<Result>(_ body: (inout LockTable) -> Result) -> Result { body(&table) }

    /// - Parameter started: when the change began (monotonic nanoseconds), for hand-off times.
    private func applyEffects(started: UInt64) {
        var index = 0
        while index < effects.count {
            let effect = effects[index]
            index += 1
            switch effect {
            case .granted(let key, let grant):
                let granted = loop.now.uptimeNanoseconds
                metrics.grantedWaiter(
                    handOff: granted &- started, wait: queuedAt.removeValue(forKey: key).map { granted &- $0 })
                answer(key) { Response.ok($0, Response.grant(grant)) }
                logger.debug(
                    "granted",
                    metadata: [
                        "lock_name": "\(grant.lock)", "lock_fence": "\(grant.fence)", "session": "\(key.session)",
                    ])
            case .failed(let key, let error):
                queuedAt[key] = nil
                metrics.failed(error.code)
                answer(key) { Response.error($0, error) }
            case .revoked(let sessionID, let lock, let owner, let reason):
                metrics.revoked(reason)
                logger.info(
                    "hold revoked",
                    metadata: ["lock_name": "\(lock)", "lock_owner": "\(owner)", "reason": "\(reason.rawValue)"])
                if let session = connections[sessionID] {
                    connections.send(Response.revoked(lock: lock, owner: owner, reason: reason), to: session)
                }
            case .leaseDeadline(let token, let deadline):
                owners.armLease(token, deadline: deadline)
            case .ownerIdle(.pid(let pid)):
                owners.stopWatching(pid)
            case .ownerIdle(.token(let token)):
                owners.disarmLease(token)
            case .ownerIdle(.session):
                break
            }
        }
        effects.removeAll(keepingCapacity: true)
        if !watchers.isEmpty { publishChanges() }
    }

    /// Makes `session` a watcher: after every change, it gets a `changed` event per lock that
    /// changed (and it may see), with the lock's state as `status` lists it.
    func startWatching(_ session: Session, lock: LockName?) throws(LockError) {
        guard watchers[session.id] == nil else {
            throw LockError(.invalid, "this connection already watches (one watch per connection)")
        }
        if watchers.isEmpty {
            _ = table.takeWatchedChanges()
            table.notesChangesForWatchers = true
        }
        watchers[session.id] = lock
    }

    private func stopWatching(_ session: Session) {
        guard watchers.removeValue(forKey: session.id) != nil, watchers.isEmpty else { return }
        table.notesChangesForWatchers = false
    }

    private func publishChanges() {
        for name in table.takeWatchedChanges() {
            // Built once per lock, and only when someone is to get it.
            var event: JSONValue?
            for (id, watched) in watchers where watched == nil || watched == name {
                guard let session = connections[id], maySee(name, session) else { continue }
                if event == nil { event = Response.changed(lock: name, locks: statusJSON(only: name, for: nil)) }
                connections.send(event!, to: session)
            }
        }
    }

    private func answer(_ key: RequestKey, _ message: (RequestID) -> JSONValue) {
        guard let session = connections[key.session], let id = session.pending.removeValue(forKey: key.tag) else {
            return
        }
        owners.disarmWait(key)
        connections.send(message(id), to: session)
        if session.isDone { closeAfterFlush(session) }
    }

    // MARK: - Connections

    /// Registers a new connection; `nil` when it was refused (too many clients).
    func open(context: ChannelHandlerContext, identity: ClientIdentity) -> Session? {
        let processes = owners.processes
        let session = connections.open(
            context: context, identity: identity, maxClients: configuration.limits.maxClients,
            stopping: isShuttingDown, groups: { processes.groups(of: $0, primary: $1) })
        if session != nil {
            metrics.connectionOpened()
            reporter.changed()
        } else {
            metrics.refused(isShuttingDown ? .shuttingDown : .limit)
        }
        return session
    }

    func close(_ session: Session) {
        connections.remove(session)
        stopWatching(session)
        for tag in session.pending.keys { owners.disarmWait(RequestKey(session: session.id, tag: tag)) }
        session.pending = [:]
        mutate { table, now, effects in table.sessionClosed(session.id, now: now, effects: &effects) }
        endOfBurst()
        checkShutdownProgress()
    }

    func inputClosed(_ session: Session) {
        session.inputClosed = true
        if session.isDone { closeAfterFlush(session) }
    }

    func refuseOversizedLine(from session: Session) {
        let limit = configuration.limits.maxLineBytes
        let error = LockError(.tooLarge, "request line longer than \(limit) bytes; closing the connection")
        connections.send(Response.error(nil, error), to: session)
        closeAfterFlush(session)
    }

    func refuseSlowLine(from session: Session) {
        let seconds = configuration.limits.lineTimeout
        logger.warning(
            "dropped a client whose request line stayed incomplete",
            metadata: ["client_pid": "\(session.identity.pid)", "seconds": "\(seconds)"])
        let error = LockError(.timeout, "request line incomplete for \(seconds)s (limits.line_timeout); closing")
        connections.send(Response.error(nil, error), to: session)
        closeAfterFlush(session)
    }

    /// Drops a client that has not read its answers for `seconds`; its session holds go with it.
    func dropStalled(_ session: Session?, context: ChannelHandlerContext, after seconds: Double) {
        logger.warning(
            "dropped a client that does not read its answers",
            metadata: ["client_pid": "\(session?.identity.pid ?? 0)", "seconds": "\(seconds)"])
        context.close(promise: nil)
    }

    /// Closes a connection once everything written to it is out, after the journal is synced:
    /// its queued answers may promise durable state.
    private func closeAfterFlush(_ session: Session) {
        persistence.sync(&table, startTime: owners.startTime(of:))
        session.flushAndClose()
    }

    // MARK: - Group commit

    /// Called after each burst of requests (and each timer or exit): sends the answers queued so
    /// far. Answers that promise journaled state wait for the end of this turn of the event loop,
    /// once its I/O events are all handled: then one fdatasync covers every connection's changes
    /// (group commit), and answers queued meanwhile wait with them so that none overtakes another.
    /// Otherwise they go out at once, which keeps the hand-off from one client to the next short.
    func endOfBurst() {
        cluster?.reconcile()
        persistence.record(&table, startTime: owners.startTime(of:))
        guard !persistence.commitScheduled else { return }
        if persistence.hasUnsyncedChanges {
            persistence.commitScheduled = true
            loop.assumeIsolated().execute { self.commit() }
        } else {
            commit()
        }
    }

    private func commit() {
        persistence.commitScheduled = false
        persistence.sync(&table, startTime: owners.startTime(of:))
        connections.flushAll()
        reporter.changed()
    }

    // MARK: - Start, reload, stop

    /// Takes the journal's holds back at start-up, before clients connect: pid holds whose
    /// process still runs (the same process: its start time matches) and token holds whose lease
    /// has not run out.
    func restore(from contents: StateJournal.Contents, journal: StateJournal) throws(StateJournal.Failure) {
        let now = self.now
        try persistence.restore(
            contents, journal: journal, into: &table, now: now, effects: &effects,
            whyGone: { whyGone($0, now: now) }, startTime: owners.startTime(of:))
        applyEffects(started: now.uptimeNanos)
    }

    /// Why a journaled hold must not come back, or `nil` when its owner is still there.
    private func whyGone(_ item: StateRecords.RestoredHold, now: Moment) -> String? {
        switch item.hold.owner {
        case .session:
            return "session holds end with lockd"
        case .token:
            if let expires = item.hold.lease?.expiresAt, expires <= now.unixTime { return "the lease ran out" }
            if let reason = item.hold.pendingRevocation {
                return "taken away (\(reason.rawValue)) while shielded, and the shield ended with lockd"
            }
            return nil
        case .pid(let pid):
            if owners.isWatching(pid) { return owners.startTime(of: pid) == item.startTime ? nil : "pid reused" }
            guard let watch = owners.open(pid), !watch.hasExited else { return "the process exited" }
            guard item.startTime == nil || watch.startTime == item.startTime else {
                watch.stop()
                return "the pid now names another process"
            }
            owners.keep(watch)
            return nil
        }
    }

    /// Joins the cluster of `settings` through `transport`: from now on, shared locks are
    /// granted only as this node's keys in etcd allow.
    func join(_ settings: ClusterSettings, transport: any EtcdTransport) {
        let cluster = ClusterLocks(settings: settings, transport: transport, service: self, logger: logger)
        self.cluster = cluster
        // A journaled hold of a shared lock was this node's while an earlier lease of it lived;
        // the cluster may have given the lock to another node since.
        let restored = table.status(of: nil).map(\.name).filter(cluster.isShared)
        if !restored.isEmpty {
            logger.warning(
                "dropped journaled holds of locks shared with the cluster",
                metadata: ["locks": "\(restored.map(\.rawValue))"])
            mutate { table, now, effects in
                for name in restored { table.loseCluster(name, now: now, effects: &effects) }
            }
        }
        cluster.start()
    }

    /// Says READY=1: the listener is open.
    func announceReady() { reporter.ready() }

    /// Takes a reloaded configuration: limits, waits, leases and the grace apply from the next
    /// request (the line limit from the next line); the socket needs a restart.
    func apply(_ new: LockdConfiguration) {
        configuration.reload(from: new)
        reporter.changed()
    }

    /// The one-line summary systemd shows (`systemctl status lockd`).
    var statusSummary: String {
        let clients = connections.count
        let held = table.heldLockCount
        let waiters = table.waiterCount
        return "serving \(clients) client\(clients == 1 ? "" : "s"), \(held) lock\(held == 1 ? "" : "s") held, "
            + "\(waiters) waiter\(waiters == 1 ? "" : "s")"
    }

    func beginShutdown() {
        guard case .running = lifecycle else { return }
        mutate { table, now, effects in table.beginShutdown(now: now, effects: &effects) }
        endOfBurst()
        let shields = table.openShieldCount
        let grace = configuration.shutdownGrace
        if shields > 0 {
            let status = "stopping: waiting up to \(grace)s for \(shields) open shield(s)"
            reporter.stopping(status)
            logger.notice("\(status)")
            let timer = loop.assumeIsolated().scheduleTask(in: .nanoseconds(Seconds.signedNanoseconds(grace))) {
                self.logger.warning("shutdown grace ended with open shields; stopping (pid and token holds stay)")
                self.finish()
            }
            lifecycle = .draining(grace: timer)
        } else {
            reporter.stopping("stopping")
            logger.notice("shutting down")
            lifecycle = .draining(grace: nil)
        }
        checkShutdownProgress()
    }

    func checkShutdownProgress() {
        if case .draining = lifecycle, table.openShieldCount == 0 { finish() }
    }

    private func finish() {
        guard case .draining(let grace) = lifecycle else { return }
        grace?.cancel()
        lifecycle = .finished
        listener?.close(promise: nil)
        cluster?.stop()
        for session in connections.all { closeAfterFlush(session) }
        owners.stopAll()
        reporter.finish()
        finished.succeed()
    }

    /// Completes the service that never started serving, so its promise is not left pending.
    func abandon() {
        if case .finished = lifecycle { return }
        if case .draining(let grace) = lifecycle { grace?.cancel() }
        lifecycle = .finished
        owners.stopAll()
        finished.succeed()
    }
}

extension LockService: OwnerEvents {
    func ownerExited(_ pid: Int32) {
        logger.debug("owner process exited", metadata: ["lock_owner_pid": "\(pid)"])
        mutate { table, now, effects in table.ownerGone(.pid(pid), now: now, effects: &effects) }
        endOfBurst()
        checkShutdownProgress()
    }

    func leaseRanOut(_ token: String) {
        mutate { table, now, effects in table.expireLease(token, now: now, effects: &effects) }
        endOfBurst()
    }

    func waitRanOut(_ key: RequestKey) {
        mutate { table, now, effects in table.timeOut(key, now: now, effects: &effects) }
        endOfBurst()
    }
}
