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
    private var inFlight: (lock: LockName, fence: UInt64, owner: OwnerSpec, name: String)?
    /// An acquire sent without an answer: whether it was granted is unknown.
    private var uncertain: (lock: LockName, owner: OwnerSpec)?

    mutating func run() -> Never {
        var connection = connect()
        while true {
            do throws(ClientError) {
                try settle(on: connection)
                try cycle(on: connection)
            } catch {
                connection = connect()
            }
            // Revocations: the checker learns of `lost` ones only from here (breaks it has).
            while let event = connection.takeRawBacklog() {
                guard event["event"]?.string == "revoked", let lock = event["lock"]?.string else { continue }
                record(.init(time: now(), kind: .revoked, lock: lock, detail: event["reason"]?.string ?? "-"))
            }
        }
    }

    /// Finishes what a lost connection left open: releases the durable hold it had (recorded, so
    /// the checker sees whether it survived) and clears a durable acquire of unknown outcome.
    private mutating func settle(on connection: LockConnection) throws(ClientError) {
        if let held = inFlight {
            try release(held.lock, fence: held.fence, owner: held.owner, name: held.name, on: connection)
        }
        if let (lock, owner) = uncertain {
            _ = try connection.call(.release(lock: lock, owner: owner, all: true), timeout: 10)
            uncertain = nil
        }
    }

    private mutating func release(
        _ lock: LockName, fence: UInt64, owner: OwnerSpec, name: String, on connection: LockConnection
    ) throws(ClientError) {
        record(.init(time: now(), kind: .releaseSent, lock: lock.rawValue, fence: fence, owner: name))
        let released = try connection.call(.release(lock: lock, owner: owner, all: true), timeout: 10)
        inFlight = nil
        if let error = released.error {
            record(
                .init(
                    time: now(), kind: .releaseFailed, lock: lock.rawValue, fence: fence, owner: name,
                    detail: error.code.description))
        } else {
            record(.init(time: now(), kind: .released, lock: lock.rawValue, fence: fence, owner: name))
        }
    }

    private mutating func cycle(on connection: LockConnection) throws(ClientError) {
        let lock = LockName("hot-\(random.next(below: locks))")!
        let roll = random.next(below: 100)
        if roll < 8 {
            record(.init(time: now(), kind: .breakSent, lock: lock.rawValue))
            let broken = try connection.call(.breakLock(lock: lock), timeout: 10).broken
            let detail = "\(broken?.released ?? -1)/\(broken?.deferred ?? -1)"
            record(.init(time: now(), kind: .breakDone, lock: lock.rawValue, detail: detail))
            return
        }
        let (owner, ownerName): (OwnerSpec, String) =
            switch random.next(below: 3) {
            case 0: (.session, "session")
            case 1: (.pid(getpid()), "pid:\(getpid())")
            default: (.token("w\(id)", ttl: ttl), "token:w\(id)")
            }
        let wait = Double(random.next(below: 300)) / 1000
        record(.init(time: now(), kind: .acquireSent, lock: lock.rawValue, owner: ownerName, detail: "\(ttl)"))
        let durable = ownerName != "session"
        if durable { uncertain = (lock, owner) }
        let answer = try connection.call(.acquire(lock: lock, mode: .exclusive, wait: wait, owner: owner), timeout: 30)
        uncertain = nil
        guard let fence = answer.grant?.fence else { return }
        record(.init(time: now(), kind: .granted, lock: lock.rawValue, fence: fence, owner: ownerName))
        if durable { inFlight = (lock, fence, owner, ownerName) }
        let shielded = roll < 20
        if shielded {
            _ = try connection.call(.shield(lock: lock, owner: owner, on: true), timeout: 10)
            record(.init(time: now(), kind: .shield, lock: lock.rawValue, fence: fence, owner: ownerName))
        }
        usleep(UInt32(random.next(below: 20_000)))
        if shielded {
            _ = try connection.call(.shield(lock: lock, owner: owner, on: false), timeout: 10)
        }
        try release(lock, fence: fence, owner: owner, name: ownerName, on: connection)
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
