public import LockClient
public import LockCore
import LockProtocol
public import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// An async client for lockd on SwiftNIO: hold a lockd lock for the length of a closure.
///
/// ```swift
/// let client = LockdClient(socketPath: "/run/lockd/lockd.sock")
/// try await client.withLock("db", mode: .exclusive, wait: .seconds(5), shielded: true) { fence in
///     try await migrate(fence: fence)
/// }
/// ```
///
/// One client keeps one connection, opened by the first call. Calls from many tasks share it
/// (requests are matched to answers by id).
///
/// **Owners.** A `.session` hold (the default) belongs to the connection: lockd releases it when
/// the connection closes, which also happens when the process dies. lockd treats every hold of
/// one connection as one owner, so the client queues its own tasks per lock name first: one task
/// of a client holds a given name at a time (the same task may nest, re-entrantly), and `wait`
/// counts the time in that queue too. A `.token` hold belongs to a token lease that the client
/// renews every third of its ttl, on NIO's event loop, from the grant until the body has ended
/// (however long the caller's task waits for a thread meanwhile); it survives a lost connection
/// and a lockd restart.
///
/// **Reconnection rules.** No call is retried behind the caller's back.
/// - A call finding no open connection opens one (once; failure throws ``LockdClientError/connection(_:)``).
/// - When the connection closes, every `.session` hold on it is gone: its body is cancelled and
///   `withLock` throws ``LockdClientError/holdLost(lock:reason:)`` with ``HoldLoss/connectionLost``.
///   Acquires waiting on it fail with ``LockdClientError/connection(_:)``.
/// - A `.token` hold carries on: its renewals open a new connection (retrying every 100 ms) and
///   its release goes over whichever connection is open then. A renewal answered `not_held` means
///   the lease ended: the body is cancelled and `withLock` throws `holdLost` with `.revoked(.expired)`.
///   If no renewal gets through before the lease would end, the same happens.
public final class LockdClient: Sendable {
    /// Whom a hold belongs to.
    public enum Owner: Sendable, Hashable {
        /// This client's connection (released when it closes).
        case session
        /// A token lease of `ttl`, renewed while the body runs. `name` defaults to a fresh random
        /// token per hold.
        case token(_ name: String? = nil, ttl: Duration)
    }

    /// The socket path this client talks to.
    public let socketPath: String
    private let group: any EventLoopGroup
    private let state = Mutex(State())
    /// Per lock name, the queue that lets one task of this client at a time hold it as `.session`.
    private let localLocks = Mutex([String: (lock: AsyncLock, users: Int)]())

    private struct State {
        var connection: Connection?
        var connecting: EventLoopFuture<Connection>?
        var nextID: Int64 = 1
        var generation = 0
        var holds: [String: ActiveHold] = [:]
    }

    /// An open connection; `generation` tells a replaced one from the current.
    struct Connection: Sendable {
        var channel: any Channel
        var generation: Int
    }

    /// Creates a client; nothing is opened until the first call.
    /// - Parameters:
    ///   - socketPath: lockd's socket (default: `$LOCKD_SOCKET`, else the user's or the system's).
    ///   - eventLoopGroup: where the connection's I/O runs (default: NIO's shared group).
    public init(
        socketPath: String = SocketPath.resolve(nil),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.socketPath = socketPath
        self.group = eventLoopGroup
    }

    deinit {
        state.withLock { $0.connection?.channel.close(promise: nil) }
    }

    /// Closes the connection. Session holds end with it; token holds stay until their lease ends.
    public func close() async {
        let channel = state.withLock { state -> (any Channel)? in
            defer { state.connection = nil }
            return state.connection?.channel
        }
        try? await channel?.close()
    }

    // MARK: withLock

    /// Holds `name` for the length of `body`, and releases it on every path.
    ///
    /// - Parameters:
    ///   - name: the lock name (1–255 bytes of `A-Z a-z 0-9 . _ : / @ + -`).
    ///   - mode: `.exclusive` (default) or `.shared`.
    ///   - wait: how long to wait for the lock; `nil` waits as long as it takes, `.zero` tries once.
    ///   - owner: `.session` (default) or a renewed `.token` lease.
    ///   - shielded: a shielded critical section: lockd defers `break` and lease expiry until the
    ///     body ends, and the calling task's cancellation is held back until then too (see
    ///     `withShield` in LockCore). Only `lost` (a cluster node cut off from etcd)
    ///     still cancels the body.
    ///   - isolation: where `body` runs: the caller's actor (by default), or none.
    ///   - body: the critical section; it gets the hold's fencing token.
    /// - Throws: ``LockdClientError/lockd(_:)`` for lockd's refusals (`busy` for a try, `timeout`,
    ///   `deadlock`, `denied`, …), ``LockdClientError/connection(_:)``,
    ///   ``LockdClientError/holdLost(lock:reason:)`` when the hold ended during the body (which was
    ///   cancelled), `CancellationError` when the caller was cancelled while waiting, or the body's error.
    public func withLock<T>(
        _ name: String,
        mode: LockMode = .exclusive,
        wait: Duration? = nil,
        owner: Owner = .session,
        shielded: Bool = false,
        isolation: isolated (any Actor)? = #isolation,
        _ body: (_ fence: UInt64) async throws -> T
    ) async throws -> T {
        guard let lock = LockName(name) else {
            throw LockdClientError.lockd(.invalid("invalid lock name: use 1-255 bytes of A-Z a-z 0-9 . _ : / @ + -"))
        }
        let spec: OwnerSpec
        let ownerKey: String
        var leaseSeconds: Double?
        switch owner {
        case .session:
            spec = .session
            ownerKey = "session"
        case .token(let given, let ttl):
            let token = given ?? Self.randomToken()
            leaseSeconds = ttl.seconds
            spec = .token(token, ttl: ttl.seconds)
            ownerKey = "token:" + token
        }
        if let section = ClientSection.current?.find(client: ObjectIdentifier(self), lock: name) {
            // A withLock of this client on this name encloses the call: the section's own task
            // re-enters (with the section's owner); any other task is its child, which would wait
            // for a hold that waits for it.
            guard section.task == currentTaskIdentity else { throw AsyncLockDeadlock(kind: .heldByAncestor) }
            return try await hold(lock, mode, wait, section.owner, section.ownerKey, nil, shielded, isolation, body)
        }
        if owner == .session {
            let local = localLock(name)
            defer { releaseLocalLock(name) }
            let start = ContinuousClock.now
            try await take(local, name: name, wait: wait)
            defer { local.unlock() }
            // What the local queue used of the wait is not waited again at lockd.
            let remaining = wait.map { max(.zero, $0 - (ContinuousClock.now - start)) }
            return try await hold(lock, mode, remaining, spec, ownerKey, nil, shielded, isolation, body)
        }
        return try await hold(lock, mode, wait, spec, ownerKey, leaseSeconds, shielded, isolation, body)
    }

    private func hold<T>(
        _ lock: LockName,
        _ mode: LockMode,
        _ wait: Duration?,
        _ spec: OwnerSpec,
        _ ownerKey: String,
        _ leaseSeconds: Double?,
        _ shielded: Bool,
        _ isolation: isolated (any Actor)?,
        _ body: (_ fence: UInt64) async throws -> T
    ) async throws -> T {
        let key = lock.rawValue + "\u{0}" + ownerKey
        let enclosing = state.withLock { $0.holds[key] }
        let (grant, connection, active, renewal) = try await acquire(
            lock, mode, wait, spec, leaseSeconds: leaseSeconds, key: key, enclosing: enclosing)
        // A re-entered hold leaves the registry entry to the enclosing one.
        defer { state.withLock { $0.holds[key] = enclosing } }
        if shielded {
            do {
                _ = try await call(.shield(lock: lock, owner: spec, on: true), expecting: connection)
            } catch {
                renewal?.stop()
                await release(lock, spec, active: active)
                throw error
            }
        }
        let outcome: Result<T, any Error>
        do {
            outcome = .success(
                try await runSection(
                    isolation: isolation, forwardingCancellation: !shielded,
                    started: { active.started(cancel: $0) }
                ) {
                    let section = ClientSection(
                        client: ObjectIdentifier(self), lock: lock.rawValue, owner: spec, ownerKey: ownerKey,
                        task: currentTaskIdentity, outer: ClientSection.current)
                    defer { section.end() }
                    return try await ClientSection.$current.withValue(section) { try await body(grant.fence) }
                })
        } catch {
            outcome = .failure(error)
        }
        let loss = active.endSection()
        renewal?.stop()
        if loss == nil {
            if shielded { _ = try? await call(.shield(lock: lock, owner: spec, on: false)) }
            await release(lock, spec, active: active)
        }
        if let loss { throw LockdClientError.holdLost(lock: lock.rawValue, reason: loss) }
        return try outcome.get()
    }

    /// Sends the acquire, with the hold registered first so that no `revoked` event for it can
    /// come before the registry knows it. A token's lease (`leaseSeconds`) is renewed from the
    /// moment lockd grants it, on the event loop that reads the grant: the task that asked may
    /// wait long for a thread of a busy cooperative pool before it runs again, and the lease must
    /// not run out meanwhile.
    private func acquire(
        _ lock: LockName, _ mode: LockMode, _ wait: Duration?, _ spec: OwnerSpec, leaseSeconds: Double?,
        key: String, enclosing: ActiveHold?
    ) async throws -> (Grant, Connection, ActiveHold, LeaseRenewal?) {
        let connection = try await connection()
        let active = ActiveHold(generation: connection.generation, isSession: spec == .session)
        state.withLock { $0.holds[key] = active }
        let renewal = leaseSeconds.flatMap { self.renewal(of: spec, ttl: $0, hold: active) }
        let request = Request(
            id: nextRequestID(),
            operation: .acquire(lock: lock, mode: mode, wait: wait.map(\.seconds), owner: spec))
        // A cancellation sends `cancel` for the acquire, and never before the acquire itself: a
        // task cancelled before it gets here has its handler run first, and a `cancel` that
        // overtook its acquire would leave the acquire waiting for good.
        let sending = Mutex((sent: false, cancelled: false))
        let sendCancel = { @Sendable in
            let cancel = Request(id: self.nextRequestID(), operation: .cancel(request: request.id))
            _ = self.send(cancel, on: connection) as EventLoopFuture<Answer>
        }
        // Without a grant: no more renewals, and the registry as it was.
        func giveUp() {
            renewal?.stop()
            state.withLock { $0.holds[key] = enclosing }
        }
        let answer: Answer
        do {
            answer = try await withTaskCancellationHandler {
                let pending: EventLoopFuture<Answer> = send(request, on: connection)
                if let renewal { pending.whenSuccess { if $0.grant != nil { renewal.start() } } }
                if sending.withLock({
                    $0.sent = true; return $0.cancelled
                }) {
                    sendCancel()
                }
                return try await self.answer(pending)
            } onCancel: {
                if sending.withLock({
                    $0.cancelled = true; return $0.sent
                }) {
                    sendCancel()
                }
            }
        } catch {
            giveUp()
            throw error
        }
        if let error = answer.error {
            giveUp()
            if error.code == .cancelled, Task.isCancelled { throw CancellationError() }
            throw LockdClientError.lockd(error)
        }
        guard let grant = answer.grant else {
            giveUp()
            throw LockdClientError.connection(ClientError(.badResponse, "lockd sent a grant without a fence"))
        }
        if Task.isCancelled {
            // The grant won the race with the cancellation: give it back.
            renewal?.stop()
            await release(lock, spec, active: active)
            state.withLock { $0.holds[key] = enclosing }
            throw CancellationError()
        }
        return (grant, connection, active, renewal)
    }

    private func release(_ lock: LockName, _ spec: OwnerSpec, active: ActiveHold) async {
        // A session hold whose connection closed is released already.
        if active.isSession, currentGeneration() != active.generation { return }
        _ = try? await call(.release(lock: lock, owner: spec, all: false))
    }

    /// The renewal of a token lease, every third of its ttl on NIO's event loop, not in a task: a
    /// cooperative pool kept busy by the application (blocking calls are common) must not let a
    /// lease run out under a running body. It starts with ``LeaseRenewal/start()``.
    private func renewal(of spec: OwnerSpec, ttl: Double, hold: ActiveHold) -> LeaseRenewal? {
        guard case .token(let token, _) = spec else { return nil }
        let renewal = LeaseRenewal(loop: group.any(), ttl: ttl) { [self] in
            connectionFuture().flatMap {
                self.send(Request(id: self.nextRequestID(), operation: .renew(token: token, ttl: ttl)), on: $0)
            }
        } lost: {
            hold.lose(.revoked(.expired))
        }
        return renewal
    }

    // MARK: requests

    /// Sends one operation over the current connection (opening one if needed) and waits for
    /// its answer. lockd's refusals come back in the answer, not as a throw.
    public func call(_ operation: Operation) async throws(LockdClientError) -> Answer {
        try await send(Request(id: nextRequestID(), operation: operation), on: connection())
    }

    /// Like ``call(_:)``, but on `connection`, and lockd's refusals thrown.
    private func call(_ operation: Operation, expecting connection: Connection) async throws -> Answer {
        let answer = try await send(Request(id: nextRequestID(), operation: operation), on: connection)
        if let error = answer.error { throw LockdClientError.lockd(error) }
        return answer
    }

    private func send(_ request: Request, on connection: Connection) async throws(LockdClientError) -> Answer {
        try await answer(send(request, on: connection))
    }

    /// Waits for the answer `pending` brings, with its failure as the client's error.
    private func answer(_ pending: EventLoopFuture<Answer>) async throws(LockdClientError) -> Answer {
        do {
            return try await pending.get()
        } catch let error as ClientError {
            throw .connection(error)
        } catch {
            throw .connection(ClientError(.connectionLost, "lost the connection to lockd at \(socketPath): \(error)"))
        }
    }

    private func send(_ request: Request, on connection: Connection) -> EventLoopFuture<Answer> {
        let promise = connection.channel.eventLoop.makePromise(of: Answer.self)
        connection.channel.writeAndFlush(PendingRequest(request: request, promise: promise)).whenFailure {
            promise.fail(ClientError(.connectionLost, "lost the connection to lockd at \(self.socketPath): \($0)"))
        }
        return promise.futureResult
    }

    private func nextRequestID() -> RequestID {
        state.withLock { state in
            defer { state.nextID += 1 }
            return .int(state.nextID)
        }
    }

    private func currentGeneration() -> Int? {
        state.withLock { $0.connection?.generation }
    }

    // MARK: connection

    /// The open connection, or the one being opened (opening one if none is).
    private func connectionFuture() -> EventLoopFuture<Connection> {
        let loop = group.any()
        // The connect starts outside the state's lock: a connect that fails at once completes
        // its callbacks (which take the lock) before it returns.
        let (future, start) = state.withLock {
            state -> (EventLoopFuture<Connection>, (EventLoopPromise<Connection>, Int)?) in
            if let connection = state.connection { return (loop.makeSucceededFuture(connection), nil) }
            if let connecting = state.connecting { return (connecting, nil) }
            state.generation += 1
            let promise = loop.makePromise(of: Connection.self)
            state.connecting = promise.futureResult
            return (promise.futureResult, (promise, state.generation))
        }
        if let (promise, generation) = start { connect(generation: generation).cascade(to: promise) }
        return future
    }

    private func connection() async throws(LockdClientError) -> Connection {
        do {
            return try await connectionFuture().get()
        } catch let error as ClientError {
            throw .connection(error)
        } catch let error as IOError {
            let reason = String(cString: strerror(error.errnoCode))
            if error.errnoCode == EACCES || error.errnoCode == EPERM {
                throw .connection(
                    ClientError(.permissionDenied, "permission denied connecting to lockd at \(socketPath)"))
            }
            throw .connection(ClientError(.unreachable, "lockd is not running at \(socketPath) (\(reason))"))
        } catch {
            throw .connection(ClientError(.unreachable, "lockd is not running at \(socketPath) (\(error))"))
        }
    }

    private func connect(generation: Int) -> EventLoopFuture<Connection> {
        let path = socketPath
        return ClientBootstrap(group: group)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        LockdChannelHandler(
                            path: path,
                            revoked: { [weak self] in self?.revoked($0, generation: generation) },
                            closed: { [weak self] in self?.closed(generation: generation) }))
                }
            }
            .connect(unixDomainSocketPath: path)
            .map { Connection(channel: $0, generation: generation) }
            .always { [self] result in
                state.withLock { state in
                    state.connecting = nil
                    if case .success(let connection) = result { state.connection = connection }
                }
            }
    }

    private func revoked(_ revocation: Revocation, generation: Int) {
        let ownerKey: String
        if revocation.owner["session"] != nil {
            ownerKey = "session"
        } else if let token = revocation.owner["token"]?.string {
            ownerKey = "token:" + token
        } else {
            return
        }
        let hold = state.withLock { $0.holds[revocation.lock.rawValue + "\u{0}" + ownerKey] }
        hold?.lose(.revoked(revocation.reason))
    }

    private func closed(generation: Int) {
        let lost: [ActiveHold] = state.withLock { state in
            if state.connection?.generation == generation { state.connection = nil }
            return state.holds.values.filter { $0.isSession && $0.generation == generation }
        }
        for hold in lost { hold.lose(.connectionLost) }
    }

    // MARK: local queue

    private func localLock(_ name: String) -> AsyncLock {
        localLocks.withLock { locks in
            let entry = locks[name] ?? (AsyncLock(), 0)
            locks[name] = (entry.lock, entry.users + 1)
            return entry.lock
        }
    }

    private func releaseLocalLock(_ name: String) {
        localLocks.withLock { locks in
            guard let entry = locks[name] else { return }
            locks[name] = entry.users > 1 ? (entry.lock, entry.users - 1) : nil
        }
    }

    /// Takes this client's queue for `name` within `wait`, as lockd would: `.zero` is a try
    /// (`busy`), a wait that runs out is `timeout`.
    private func take(_ local: AsyncLock, name: String, wait: Duration?) async throws {
        guard let wait else { return try await local.lock() }
        if local.tryLock() { return }
        let holder = "\"\(name)\" is held by another task of this client"
        if wait <= .zero { throw LockdClientError.lockd(LockError(.busy, holder)) }
        let taken = await withTaskGroup(of: Bool.self) { group in
            group.addTask { (try? await local.lock()) != nil }
            group.addTask {
                try? await Task.sleep(for: wait)
                return false
            }
            var taken = await group.next() ?? false
            group.cancelAll()
            // A grant that crossed the timeout still counts: the lock is ours either way.
            for await result in group { taken = taken || result }
            return taken
        }
        if taken { return }
        try Task.checkCancellation()
        throw LockdClientError.lockd(LockError(.timeout, holder))
    }

    private static func randomToken() -> String {
        var generator = SystemRandomNumberGenerator()
        let bits = (0..<2).map { _ in String(generator.next() as UInt64, radix: 16) }
        return "swift-" + bits.joined(separator: "-")
    }
}

/// The withLock sections the current task runs in (a task-local), so that a nested withLock
/// can tell re-entrance by the section's own task from a child task's request.
final class ClientSection: Sendable {
    let client: ObjectIdentifier
    let lock: String
    let owner: OwnerSpec
    let ownerKey: String
    let task: UInt
    let outer: ClientSection?
    /// Cleared when the section ends: an unstructured task that inherited the record and asks
    /// later is no child of a running section.
    private let running = Atomic(true)

    @TaskLocal static var current: ClientSection?

    init(client: ObjectIdentifier, lock: String, owner: OwnerSpec, ownerKey: String, task: UInt, outer: ClientSection?)
    {
        self.client = client
        self.lock = lock
        self.owner = owner
        self.ownerKey = ownerKey
        self.task = task
        self.outer = outer
    }

    func end() { running.store(false, ordering: .releasing) }

    func find(client: ObjectIdentifier, lock: String) -> ClientSection? {
        var section: ClientSection? = self
        while let candidate = section {
            if candidate.client == client, candidate.lock == lock, candidate.running.load(ordering: .acquiring) {
                return candidate
            }
            section = candidate.outer
        }
        return nil
    }
}

/// A token lease kept alive on an event loop: a renewal every third of the ttl; after a failed
/// one (no connection, no answer) another every 100 ms until a ttl has passed since the last that
/// got through; `not_held`, or a ttl without success, means the lease is gone.
final class LeaseRenewal: Sendable {
    private let loop: any EventLoop
    private let ttl: TimeAmount
    private let third: TimeAmount
    private let renew: @Sendable () -> EventLoopFuture<Answer>
    private let lost: @Sendable () -> Void
    private let state = Mutex<(scheduled: Scheduled<Void>?, stopped: Bool, renewedAt: NIODeadline)>(
        (nil, false, .now()))

    init(
        loop: any EventLoop,
        ttl: Double,
        renew: @escaping @Sendable () -> EventLoopFuture<Answer>,
        lost: @escaping @Sendable () -> Void
    ) {
        self.loop = loop
        self.ttl = .nanoseconds(Int64(min(ttl, 3e9) * 1e9))
        self.third = .nanoseconds(self.ttl.nanoseconds / 3)
        self.renew = renew
        self.lost = lost
    }

    /// Starts renewing: the lease was (re)granted now.
    func start() {
        state.withLock { $0.renewedAt = .now() }
        schedule(after: third)
    }

    func stop() {
        let scheduled = state.withLock { state in
            state.stopped = true
            return state.scheduled
        }
        scheduled?.cancel()
    }

    private func schedule(after delay: TimeAmount) {
        state.withLock { state in
            guard !state.stopped else { return }
            state.scheduled = loop.scheduleTask(in: delay) { self.renewOnce() }
        }
    }

    private func renewOnce() {
        renew().whenComplete { result in
            switch result {
            case .success(let answer) where answer.error?.code == .notHeld:
                self.end()
            case .success(let answer) where answer.error == nil:
                self.state.withLock { $0.renewedAt = .now() }
                self.schedule(after: self.third)
            default:
                let expired = self.state.withLock { .now() - $0.renewedAt >= self.ttl }
                if expired { self.end() } else { self.schedule(after: .milliseconds(100)) }
            }
        }
    }

    private func end() {
        let stopped = state.withLock { state in
            defer { state.stopped = true }
            return state.stopped
        }
        if !stopped { lost() }
    }
}

/// A hold whose body runs: how it may end early, and how to stop its body then.
final class ActiveHold: Sendable {
    let generation: Int
    let isSession: Bool
    private let state = Mutex<(loss: HoldLoss?, cancel: (@Sendable () -> Void)?, ended: Bool)>((nil, nil, false))

    init(generation: Int, isSession: Bool) {
        self.generation = generation
        self.isSession = isSession
    }

    /// The body's task started: a loss from now on cancels it (one before cancels it at once).
    func started(cancel: @escaping @Sendable () -> Void) {
        let lostAlready = state.withLock { state in
            state.cancel = cancel
            return state.loss != nil
        }
        if lostAlready { cancel() }
    }

    /// The hold ended early, unless the body is over (a deferred break applies after a shield).
    func lose(_ loss: HoldLoss) {
        let cancel = state.withLock { state -> (@Sendable () -> Void)? in
            guard !state.ended, state.loss == nil else { return nil }
            state.loss = loss
            return state.cancel
        }
        cancel?()
    }

    /// The body is over: returns the loss that came while it ran.
    func endSection() -> HoldLoss? {
        state.withLock { state in
            state.ended = true
            return state.loss
        }
    }
}

extension Duration {
    /// The duration in seconds, as the protocol writes it.
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
