import Glibc
import LockClient
import LockCore
import LockProtocol

/// One client process of the stress run: random acquire/hold/release cycles as a session, pid or
/// token owner, shields, and breaks, on a few hot locks; reconnects when lockd goes away.
struct StressWorker {
    let socket: String
    let id: Int
    let locks: Int
    let ttl: Double
    let log: Int32
    var random: SplitMix

    init(socket: String, id: Int, locks: Int, ttl: Double, log: Int32, random: SplitMix) {
        self.socket = socket
        self.id = id
        self.locks = locks
        self.ttl = ttl
        self.log = log
        self.random = random
    }

    /// A pid or token hold whose release has not been answered: after a reconnect it must still
    /// be there, since lockd promised to keep it across its restarts.
    private var inFlight: (lock: String, fence: UInt64, owner: JSONValue, name: String)?
    /// An acquire sent without an answer: whether it was granted is unknown.
    private var uncertain: (lock: String, owner: JSONValue)?

    mutating func run() -> Never {
        var connection = connect()
        while true {
            do throws(ClientError) {
                try settle(on: connection)
                try cycle(on: connection)
            } catch {
                connection = connect()
            }
            while connection.takeBacklog() != nil {}  // revoked events: the checker uses break records
        }
    }

    /// Finishes what a lost connection left open: releases the durable hold it had (recorded, so
    /// the checker sees whether it survived) and clears a durable acquire of unknown outcome.
    private mutating func settle(on connection: LockConnection) throws(ClientError) {
        if let held = inFlight {
            try release(held.lock, fence: held.fence, owner: held.owner, name: held.name, on: connection)
        }
        if let (lock, owner) = uncertain {
            _ = try connection.call(
                op: "release", [("lock", .string(lock)), ("owner", owner), ("all", true)], timeout: 10)
            uncertain = nil
        }
    }

    private mutating func release(
        _ lock: String, fence: UInt64, owner: JSONValue, name: String, on connection: LockConnection
    ) throws(ClientError) {
        record(.init(time: now(), kind: .releaseSent, lock: lock, fence: fence, owner: name))
        let released = try connection.call(
            op: "release", [("lock", .string(lock)), ("owner", owner), ("all", true)], timeout: 10)
        inFlight = nil
        if released["ok"]?.bool == true {
            record(.init(time: now(), kind: .released, lock: lock, fence: fence, owner: name))
        } else {
            let code = released["error"]?["code"]?.string ?? "?"
            record(.init(time: now(), kind: .releaseFailed, lock: lock, fence: fence, owner: name, detail: code))
        }
    }

    private mutating func cycle(on connection: LockConnection) throws(ClientError) {
        let lock = "hot-\(random.next(below: locks))"
        let roll = random.next(below: 100)
        if roll < 8 {
            record(.init(time: now(), kind: .breakSent, lock: lock))
            let answer = try connection.call(op: "break", [("lock", .string(lock))], timeout: 10)
            let detail =
                "\(answer["released"]?.number.map { Int($0) } ?? -1)/\(answer["deferred"]?.number.map { Int($0) } ?? -1)"
            record(.init(time: now(), kind: .breakDone, lock: lock, detail: detail))
            return
        }
        let (owner, ownerName): (JSONValue, String) =
            switch random.next(below: 3) {
            case 0: (.string("session"), "session")
            case 1: (.object([("pid", .int(Int64(getpid())))]), "pid:\(getpid())")
            default: (.object([("token", .string("w\(id)")), ("ttl", .double(ttl))]), "token:w\(id)")
            }
        let wait = Double(random.next(below: 300)) / 1000
        record(.init(time: now(), kind: .acquireSent, lock: lock, owner: ownerName, detail: "\(ttl)"))
        let durable = ownerName != "session"
        if durable { uncertain = (lock, owner) }
        let answer = try connection.call(
            op: "acquire", [("lock", .string(lock)), ("owner", owner), ("wait", .double(wait))], timeout: 30)
        uncertain = nil
        guard answer["ok"]?.bool == true, case .int(let fence)? = answer["fence"] else { return }
        record(.init(time: now(), kind: .granted, lock: lock, fence: UInt64(fence), owner: ownerName))
        if durable { inFlight = (lock, UInt64(fence), owner, ownerName) }
        let shielded = roll < 20
        if shielded {
            _ = try connection.call(
                op: "shield", [("lock", .string(lock)), ("owner", owner), ("on", true)], timeout: 10)
            record(.init(time: now(), kind: .shield, lock: lock, fence: UInt64(fence), owner: ownerName))
        }
        usleep(UInt32(random.next(below: 20_000)))
        if shielded {
            _ = try connection.call(
                op: "shield", [("lock", .string(lock)), ("owner", owner), ("on", false)], timeout: 10)
        }
        try release(lock, fence: UInt64(fence), owner: owner, name: ownerName, on: connection)
    }

    private func connect() -> LockConnection {
        while true {
            if let connection = try? LockConnection(path: socket) { return connection }
            usleep(20_000)
        }
    }

    private func record(_ event: StressEvent) {
        let bytes = Array(event.line.utf8)
        _ = bytes.withUnsafeBytes { write(log, $0.baseAddress, $0.count) }
    }
}

func now() -> Double { LockConnection.monotonicSeconds() }
