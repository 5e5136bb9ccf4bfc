import Glibc
import LockCore
import LockProtocol
import Logging

/// lockd's durable state: the journal, what it last says of each lock, the fence reservation,
/// restore at start-up and compaction. It also keeps the group commit's one piece of state: whether
/// the end-of-turn sync is scheduled. Confined to the service's event loop.
final class Persistence {
    /// Fences are reserved in blocks, so a session grant (not journaled) never needs a write,
    /// and a restart starts above every fence handed out before it.
    static let fenceBlock: UInt64 = 4096

    private let logger: Logger
    /// The state journal; `nil`: persistence is off.
    private(set) var journal: StateJournal?
    private var persisted: [LockName: [DurableHold]] = [:]
    private var reservedFence: UInt64 = 0
    /// Whether answers wait for a sync already scheduled for the end of this loop turn.
    var commitScheduled = false
    /// Told how long each journal sync took, in nanoseconds (the metrics).
    private let synced: (UInt64) -> Void

    init(logger: Logger, synced: @escaping (UInt64) -> Void = { _ in }) {
        self.logger = logger
        self.synced = synced
    }

    /// Takes the journal's holds back at start-up, before clients connect: each hold that
    /// `whyGone` does not rule out (its owner still there). Then rewrites the journal as a snapshot
    /// of what was kept, and starts recording the table's changes.
    func restore(
        _ contents: StateJournal.Contents, journal: StateJournal, into table: inout LockTable, now: Moment,
        effects: inout [LockEffect], whyGone: (StateRecords.RestoredHold) -> String?, startTime: (Int32) -> UInt64?
    ) throws(StateJournal.Failure) {
        var restored = 0
        var dropped: [String] = []
        var unusable = contents.unusableRecords
        for (_, record) in contents.locks.sorted(by: { $0.key < $1.key }) {
            let (holds, damaged) = StateRecords.holds(of: record)
            unusable += damaged
            for item in holds {
                if let reason = whyGone(item) {
                    dropped.append("\(item.hold.lock) by \(item.hold.owner): \(reason)")
                } else if table.restore(item.hold, now: now, effects: &effects) {
                    restored += 1
                } else {
                    unusable += 1
                }
            }
        }
        table.raiseFence(to: contents.fence)
        reservedFence = Self.reservation(above: table.currentFence)
        self.journal = journal
        try compact(table, startTime: startTime)
        table.recordsChanges = true
        logger.notice(
            "state restored",
            metadata: [
                "state_directory": "\(journal.directory)", "records": "\(contents.records)", "restored": "\(restored)",
                "dropped": "\(dropped.count)", "next_fence": "\(table.currentFence + 1)",
            ])
        for line in dropped { logger.info("dropped a hold whose owner is gone", metadata: ["hold": "\(line)"]) }
        if unusable > 0 {
            logger.warning(
                "dropped journal records that lockd cannot use (out of range, malformed, or in conflict)",
                metadata: ["records": "\(unusable)"])
        }
        if contents.droppedBytes > 0 {
            logger.warning(
                "the state journal ended in a torn record; cut it", metadata: ["bytes": "\(contents.droppedBytes)"])
        }
    }

    /// Whether journaled changes wait for the disk (then answers wait for them).
    var hasUnsyncedChanges: Bool { journal?.hasPending ?? false }

    /// Appends a record for each lock whose durable holds changed since the last call, and a new
    /// fence reservation when the current one is used up; nothing is synced yet.
    func record(_ table: inout LockTable, startTime: (Int32) -> UInt64?) {
        guard let journal else { return }
        if table.hasChangedLocks {
            for name in table.takeChangedLocks() {
                let holds = table.durableHolds(of: name)
                guard holds != persisted[name] ?? [] else { continue }
                journal.append(StateRecords.lock(name, holds: holds, startTime: startTime))
                persisted[name] = holds.isEmpty ? nil : holds
            }
        }
        let fence = table.currentFence
        if fence >= reservedFence, reservedFence < LockTable.maximumFence {
            reservedFence = Self.reservation(above: fence)
            journal.append(StateRecords.fence(reservedFence))
        }
    }

    /// Journals what changed since the last call and waits for the disk; called before answers
    /// are flushed. A state that cannot be written ends lockd: acknowledging a hold it cannot
    /// keep would break its promise, and systemd restarts it from the last good journal.
    func sync(_ table: inout LockTable, startTime: (Int32) -> UInt64?) {
        guard let journal else { return }
        record(&table, startTime: startTime)
        guard journal.hasPending else { return }
        do {
            let start = Self.monotonicNanos()
            try journal.sync()
            synced(Self.monotonicNanos() &- start)
            if journal.size > max(1 << 20, persisted.count * 2048) { try compact(table, startTime: startTime) }
        } catch {
            logger.critical("cannot write the state journal; stopping", metadata: ["error": "\(error)"])
            exit(70)
        }
    }

    private static func monotonicNanos() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
    }

    /// The next fence reservation: a block above `fence`, never past the largest fence.
    private static func reservation(above fence: UInt64) -> UInt64 {
        min(fence + fenceBlock, LockTable.maximumFence)
    }

    private func compact(_ table: LockTable, startTime: (Int32) -> UInt64?) throws(StateJournal.Failure) {
        guard let journal else { return }
        persisted = [:]
        var records = [StateRecords.fence(reservedFence)]
        for name in table.locksWithDurableHolds.sorted() {
            let holds = table.durableHolds(of: name)
            persisted[name] = holds
            records.append(StateRecords.lock(name, holds: holds, startTime: startTime))
        }
        try journal.compact(to: records)
    }
}
