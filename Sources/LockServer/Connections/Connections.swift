import LockCore
import LockProtocol
import Logging
import NIOCore

/// The open connections: who is connected, the answers each has queued, the end-of-burst flush,
/// and the refusal of connections beyond `limits.max_clients`. Confined to the service's loop.
final class Connections {
    private let logger: Logger
    private var sessions: [SessionID: Session] = [:]
    private var nextSession: UInt64 = 1
    /// Sessions with queued answers since the last ``flushAll()``.
    private var unflushed: [Session] = []
    /// One reused buffer for serializing answers.
    private var scratch: [UInt8] = []
    /// Connections refused since the last log line about them, and when that line was written.
    private var refusals: (count: Int, lastLogged: NIODeadline?) = (0, nil)

    init(logger: Logger) {
        self.logger = logger
    }

    var count: Int { sessions.count }
    var all: Dictionary<SessionID, Session>.Values { sessions.values }

    subscript(id: SessionID) -> Session? { sessions[id] }

    /// Registers a new connection, or answers one `limit` error and closes it when `maxClients`
    /// connections are open already.
    func open(
        context: ChannelHandlerContext, identity: ClientIdentity, maxClients: Int, stopping: Bool,
        groups: @escaping (Int32, UInt32) -> Set<UInt32>
    ) -> Session? {
        if stopping {
            // The listener stays open while a stop waits for shields, so a client learns why it
            // cannot have a lock instead of finding no socket.
            refuse(context, identity, groups, LockError.shuttingDown("lockd is stopping; try again when it is back"))
            return nil
        }
        guard sessions.count < maxClients else {
            logRefusal(identity, maxClients: maxClients, now: context.eventLoop.now)
            let error = LockError(.limit, "lockd serves at most \(maxClients) connections (limits.max_clients)")
            refuse(context, identity, groups, error)
            return nil
        }
        let session = Session(id: SessionID(nextSession), identity: identity, context: context, groups: groups)
        nextSession += 1
        sessions[session.id] = session
        logger.debug(
            "client connected",
            metadata: ["session": "\(session.id)", "client_pid": "\(identity.pid)", "client_uid": "\(identity.uid)"])
        return session
    }

    /// Answers one connection-level error line (`"id": null`) and closes the connection.
    private func refuse(
        _ context: ChannelHandlerContext, _ identity: ClientIdentity,
        _ groups: @escaping (Int32, UInt32) -> Set<UInt32>,
        _ error: LockError
    ) {
        let refused = Session(id: SessionID(0), identity: identity, context: context, groups: groups)
        _ = refused.send(Response.error(nil, error), scratch: &scratch)
        refused.flushAndClose()
    }

    /// Forgets a closed connection.
    func remove(_ session: Session) {
        sessions[session.id] = nil
    }

    /// Queues an answer or event for `session`; ``flushAll()`` writes it.
    func send(_ message: JSONValue, to session: Session) {
        if session.send(message, scratch: &scratch) { unflushed.append(session) }
    }

    /// Writes every queued answer, one write per connection.
    func flushAll() {
        for session in unflushed { session.flush() }
        unflushed.removeAll(keepingCapacity: true)
    }

    /// Logs a refused connection, but at most one line per 10 s with the count since the last:
    /// a client looping on connect must not turn into a log flood.
    private func logRefusal(_ identity: ClientIdentity, maxClients: Int, now: NIODeadline) {
        refusals.count += 1
        if let last = refusals.lastLogged, now - last < .seconds(10) { return }
        logger.warning(
            "refused connections: too many clients",
            metadata: [
                "client_pid": "\(identity.pid)", "client_uid": "\(identity.uid)", "max_clients": "\(maxClients)",
                "refused": "\(refusals.count)",
            ])
        refusals = (0, now)
    }
}
