import Glibc
import LockCore
import LockProtocol
import Logging
import NIOCore

/// Serves the lock table to connections. Every method runs on the one event loop that owns it,
/// so the table needs no lock and every change is seen in order (like Redis' single thread).
final class LockService {
    static let serverName = "lockd \(lockdVersion)"

    enum State {
        case running
        case draining(grace: Scheduled<Void>?)
        case finished
    }

    let loop: any EventLoop
    let logger: Logger
    /// The settings in force; a reload replaces them (``apply(_:)``).
    var configuration: LockdConfiguration
    let notifier: SystemdNotifier
    private let finished: EventLoopPromise<Void>
    var table = LockTable()
    var sessions: [SessionID: Session] = [:]
    var watchers: [Int32: ProcessWatcher] = [:]
    var leaseTimers: [String: Scheduled<Void>] = [:]
    var effects: [LockEffect] = []
    var scratch: [UInt8] = []
    /// Sessions with queued answers, and whether the end-of-turn flush is scheduled.
    private var unflushed: [Session] = []
    private var flushScheduled = false
    var state = State.running
    var listener: (any Channel)?
    /// The last STATUS= sent, and whether an update is already scheduled.
    var reportedStatus = ""
    var statusUpdatePending = false
    var watchdogTask: RepeatedTask?
    /// The state journal (nil: persistence off), what it last says of each lock, and the fence
    /// reservation it holds.
    var journal: StateJournal?
    var persisted: [LockName: [DurableHold]] = [:]
    var reservedFence: UInt64 = 0
    private var nextSession: UInt64 = 1
    /// Connections refused since the last log line about them, and when that line was written.
    private var refusals: (count: Int, lastLogged: NIODeadline?) = (0, nil)

    init(loop: any EventLoop, logger: Logger, configuration: LockdConfiguration, notifier: SystemdNotifier) {
        self.loop = loop
        self.logger = logger
        self.configuration = configuration
        self.notifier = notifier
        self.finished = loop.makePromise()
    }

    /// Completes when the service has stopped.
    var finishedFuture: EventLoopFuture<Void> { finished.futureResult }

    /// A handle to this loop-confined service for `@Sendable` callbacks.
    var bound: NIOLoopBound<LockService> { NIOLoopBound(self, eventLoop: loop) }

    static func now() -> Moment {
        var wall = timespec()
        clock_gettime(CLOCK_REALTIME, &wall)
        return Moment(
            uptimeNanos: NIODeadline.now().uptimeNanoseconds,
            unixTime: Double(wall.tv_sec) + Double(wall.tv_nsec) / 1e9)
    }

    // MARK: - Connections

    /// Registers a new connection, or answers one `limit` error and closes it when
    /// `limits.max_clients` connections are open already.
    func open(context: ChannelHandlerContext, identity: ClientIdentity) -> Session? {
        let maxClients = configuration.limits.maxClients
        guard sessions.count < maxClients else {
            logRefusal(identity, maxClients: maxClients)
            let error = LockError(.limit, "lockd serves at most \(maxClients) connections (limits.max_clients)")
            scratch.removeAll(keepingCapacity: true)
            Response.error(nil, error).write(to: &scratch)
            scratch.append(UInt8(ascii: "\n"))
            let written = context.eventLoop.makePromise(of: Void.self)
            context.writeAndFlush(NIOAny(context.channel.allocator.buffer(bytes: scratch)), promise: written)
            written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            return nil
        }
        let session = Session(id: SessionID(nextSession), identity: identity, context: context)
        nextSession += 1
        sessions[session.id] = session
        logger.debug(
            "client connected",
            metadata: ["session": "\(session.id)", "client_pid": "\(identity.pid)", "client_uid": "\(identity.uid)"])
        stateChanged()
        return session
    }

    /// Logs a refused connection, but at most one line per 10 s with the count since the last:
    /// a client looping on connect must not turn into a log flood.
    private func logRefusal(_ identity: ClientIdentity, maxClients: Int) {
        refusals.count += 1
        let now = NIODeadline.now()
        if let last = refusals.lastLogged, now - last < .seconds(10) { return }
        logger.warning(
            "refused connections: too many clients",
            metadata: [
                "client_pid": "\(identity.pid)", "client_uid": "\(identity.uid)", "max_clients": "\(maxClients)",
                "refused": "\(refusals.count)",
            ])
        refusals = (0, now)
    }

    func close(_ session: Session) {
        sessions[session.id] = nil
        for pending in session.pending.values { pending.timer?.cancel() }
        session.pending = [:]
        table.sessionClosed(session.id, now: Self.now(), effects: &effects)
        applyEffects()
        flush()
        checkShutdownProgress()
    }

    func inputClosed(_ session: Session) {
        session.inputClosed = true
        if session.pending.isEmpty { closeAfterFlush(session) }
    }

    func refuseOversizedLine(from session: Session) {
        let limit = configuration.limits.maxLineBytes
        let error = LockError(.tooLarge, "request line longer than \(limit) bytes; closing the connection")
        send(Response.error(nil, error), to: session)
        closeAfterFlush(session)
    }

    func refuseSlowLine(from session: Session) {
        let seconds = configuration.limits.lineTimeout
        logger.warning(
            "dropped a client whose request line stayed incomplete",
            metadata: ["client_pid": "\(session.identity.pid)", "seconds": "\(seconds)"])
        let error = LockError(.timeout, "request line incomplete for \(seconds)s (limits.line_timeout); closing")
        send(Response.error(nil, error), to: session)
        closeAfterFlush(session)
    }

    /// Drops a client that has not read its answers for `seconds`; its session holds go with it.
    func dropStalled(_ session: Session?, context: ChannelHandlerContext, after seconds: Double) {
        logger.warning(
            "dropped a client that does not read its answers",
            metadata: ["client_pid": "\(session?.identity.pid ?? 0)", "seconds": "\(seconds)"])
        context.close(promise: nil)
    }

    /// Closes a connection once everything written to it is out: a plain close would drop
    /// answers still waiting for the end-of-read flush.
    func closeAfterFlush(_ session: Session) {
        persistChanges()
        let context = session.context
        let flushed = context.eventLoop.makePromise(of: Void.self)
        session.flush(promise: flushed)
        flushed.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    /// Reads the table where it lives. A non-mutating call straight on `table` first copies the
    /// whole struct out of this class, retaining and releasing each of its collections, which
    /// showed in profiles of the request path; through `inout` the call borrows it in place.
    func inspectTable<Result>(_ body: (inout LockTable) -> Result) -> Result { body(&table) }

    func send(_ message: JSONValue, to session: Session) {
        if session.send(message, scratch: &scratch) { unflushed.append(session) }
    }

    /// Sends the answers queued so far. Answers that promise journaled state wait for the end of
    /// this turn of the event loop, once its I/O events are all handled: then one fdatasync
    /// covers every connection's changes (group commit), and answers queued meanwhile wait with
    /// them so that none overtakes another. Otherwise they go out at once, which keeps the hand-off
    /// from one client to the next short.
    func flush() {
        journalChanges()
        guard !flushScheduled else { return }
        if hasUnsyncedChanges {
            flushScheduled = true
            loop.assumeIsolated().execute { self.flushNow() }
        } else {
            flushNow()
        }
    }

    private func flushNow() {
        flushScheduled = false
        persistChanges()
        for session in unflushed { session.flush() }
        unflushed.removeAll(keepingCapacity: true)
        stateChanged()
    }

    // MARK: - Effects of the table

    func applyEffects() {
        var index = 0
        while index < effects.count {
            let effect = effects[index]
            index += 1
            switch effect {
            case .granted(let key, let grant):
                answer(key) { Response.ok($0, Response.grant(grant)) }
                logger.debug(
                    "granted",
                    metadata: [
                        "lock_name": "\(grant.lock)", "lock_fence": "\(grant.fence)", "session": "\(key.session)",
                    ])
            case .failed(let key, let error):
                answer(key) { Response.error($0, error) }
            case .revoked(let sessionID, let lock, let owner, let reason):
                logger.info(
                    "hold revoked",
                    metadata: ["lock_name": "\(lock)", "lock_owner": "\(owner)", "reason": "\(reason.rawValue)"])
                if let session = sessions[sessionID] {
                    send(Response.revoked(lock: lock, owner: owner, reason: reason), to: session)
                }
            case .leaseDeadline(let token, let deadline):
                leaseTimers[token]?.cancel()
                let bound = self.bound
                leaseTimers[token] = loop.scheduleTask(deadline: .uptimeNanoseconds(deadline)) {
                    bound.value.leaseTimerFired(token)
                }
            case .ownerIdle(.pid(let pid)):
                watchers.removeValue(forKey: pid)?.stop()
            case .ownerIdle(.token(let token)):
                leaseTimers.removeValue(forKey: token)?.cancel()
            case .ownerIdle(.session):
                break
            }
        }
        effects.removeAll(keepingCapacity: true)
    }

    private func answer(_ key: RequestKey, _ message: (RequestID) -> JSONValue) {
        guard let session = sessions[key.session], let pending = session.pending.removeValue(forKey: key.tag) else {
            return
        }
        pending.timer?.cancel()
        send(message(pending.id), to: session)
        if session.inputClosed, session.pending.isEmpty { closeAfterFlush(session) }
    }

    // MARK: - Timers and watched processes

    func waiterTimerFired(_ key: RequestKey) {
        table.timeOut(key, now: Self.now(), effects: &effects)
        applyEffects()
        flush()
    }

    func leaseTimerFired(_ token: String) {
        leaseTimers[token] = nil
        table.expireLease(token, now: Self.now(), effects: &effects)
        applyEffects()
        flush()
    }

    func processExited(_ watcher: ProcessWatcher) {
        guard watchers[watcher.pid] === watcher, watcher.hasExited else { return }
        watchers[watcher.pid] = nil
        logger.debug("owner process exited", metadata: ["lock_owner_pid": "\(watcher.pid)"])
        table.ownerGone(.pid(watcher.pid), now: Self.now(), effects: &effects)
        applyEffects()
        flush()
        checkShutdownProgress()
    }

    /// Checks that `session` may name `pid` as owner (itself, an ancestor with its uid, or any
    /// process for root) and makes sure the process is watched.
    func claim(pid: Int32, for session: Session) throws(LockError) {
        if let watcher = watchers[pid], watcher.hasExited {
            processExited(watcher)
        }
        // Open the pidfd before checking ancestry: if the ancestor check passes afterwards, the
        // pidfd refers to that very process and not to a later one that reused its pid.
        var opened: ProcessWatcher?
        if watchers[pid] == nil {
            guard let watcher = makeWatcher(pid) else { throw .invalid("no process with pid \(pid)") }
            opened = watcher
        }
        let identity = session.identity
        let allowed =
            identity.isRoot || pid == identity.pid
            || (ProcFS.isSelfOrAncestor(pid, of: identity.pid) && ProcFS.uid(of: pid) == identity.uid)
        guard allowed else {
            opened?.stop()
            throw .denied(
                "pid \(pid) is neither the client (pid \(identity.pid)) nor an ancestor of it with uid \(identity.uid)")
        }
        if let opened { watchers[pid] = opened }
    }

    /// Opens a pidfd watch on `pid`, or `nil` when there is no such process.
    func makeWatcher(_ pid: Int32) -> ProcessWatcher? {
        let bound = self.bound
        let loop = self.loop
        return try? ProcessWatcher(pid: pid) {
            loop.execute {
                if let watcher = bound.value.watchers[pid] { bound.value.processExited(watcher) }
            }
        }
    }

    // MARK: - Shutdown

    func beginShutdown() {
        guard case .running = state else { return }
        listener?.close(promise: nil)
        table.beginShutdown(now: Self.now(), effects: &effects)
        applyEffects()
        flush()
        let shields = table.openShieldCount
        let grace = configuration.shutdownGrace
        if shields > 0 {
            let status = "stopping: waiting up to \(grace)s for \(shields) open shield(s)"
            notifier.stopping(status: status)
            logger.notice("\(status)")
            let bound = self.bound
            let timer = loop.scheduleTask(in: .nanoseconds(Seconds.signedNanoseconds(grace))) {
                bound.value.logger.warning("shutdown grace ended with open shields; releasing everything")
                bound.value.finish()
            }
            state = .draining(grace: timer)
        } else {
            notifier.stopping(status: "stopping")
            logger.notice("shutting down")
            state = .draining(grace: nil)
        }
        checkShutdownProgress()
    }

    func checkShutdownProgress() {
        if case .draining = state, table.openShieldCount == 0 { finish() }
    }

    func finish() {
        if case .draining(let grace) = state { grace?.cancel() }
        guard case .draining = state else { return }
        state = .finished
        for session in sessions.values { closeAfterFlush(session) }
        for watcher in watchers.values { watcher.stop() }
        watchers = [:]
        for timer in leaseTimers.values { timer.cancel() }
        watchdogTask?.cancel()
        finished.succeed()
    }

    /// Completes the service that never started serving, so its promise is not left pending.
    func abandon() {
        state = .finished
        finished.succeed()
    }

    var isShuttingDown: Bool {
        if case .running = state { return false }
        return true
    }
}
