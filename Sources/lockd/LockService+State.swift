import Glibc
import LockCore
import LockProtocol
import Logging

extension LockService {
    /// Fences are reserved in blocks, so a session grant (not journaled) never needs a write,
    /// and a restart starts above every fence handed out before it.
    static let fenceBlock: UInt64 = 4096

    /// Takes the journal's holds back at start-up, before clients connect: pid holds whose
    /// process still runs (the same process: its start time matches) and token holds whose lease
    /// has not run out. Then rewrites the journal as a snapshot of what was kept.
    func restoreState(from contents: StateJournal.Contents, journal: StateJournal) throws(StateJournal.Failure) {
        let now = Self.now()
        var restored = 0
        var dropped: [String] = []
        var unusable = contents.unusableRecords
        for (_, record) in contents.locks.sorted(by: { $0.key < $1.key }) {
            let (holds, damaged) = StateRecords.holds(of: record)
            unusable += damaged
            for item in holds {
                if let reason = whyGone(item, now: now) {
                    dropped.append("\(item.hold.lock) by \(item.hold.owner): \(reason)")
                    continue
                }
                if table.restore(item.hold, now: now, effects: &effects) {
                    restored += 1
                } else {
                    unusable += 1
                }
            }
        }
        applyEffects()
        table.raiseFence(to: contents.fence)
        reservedFence = Self.reservation(above: table.currentFence)
        self.journal = journal
        try compactJournal()
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
            if let watcher = watchers[pid] { return watcher.startTime == item.startTime ? nil : "pid reused" }
            guard let watcher = makeWatcher(pid), !watcher.hasExited else { return "the process exited" }
            guard item.startTime == nil || watcher.startTime == item.startTime else {
                watcher.stop()
                return "the pid now names another process"
            }
            watchers[pid] = watcher
            return nil
        }
    }

    /// Journals what changed since the last call and waits for the disk; called before answers
    /// are flushed. A state that cannot be written ends lockd: acknowledging a hold it cannot
    /// keep would break its promise, and systemd restarts it from the last good journal.
    func persistChanges() {
        guard let journal else { return }
        journalChanges()
        guard journal.hasPending else { return }
        do {
            try journal.sync()
            if journal.size > max(1 << 20, persisted.count * 2048) { try compactJournal() }
        } catch {
            logger.critical("cannot write the state journal; stopping", metadata: ["error": "\(error)"])
            exit(70)
        }
    }

    /// Whether journaled changes wait for the disk (then answers wait for them).
    var hasUnsyncedChanges: Bool { journal?.hasPending ?? false }

    /// Appends a record for each lock whose durable holds changed since the last call, and a new
    /// fence reservation when the current one is used up; nothing is synced yet.
    func journalChanges() {
        guard let journal else { return }
        for name in inspectTable({ $0.hasChangedLocks }) ? table.takeChangedLocks() : [] {
            let holds = inspectTable { $0.durableHolds(of: name) }
            guard holds != persisted[name] ?? [] else { continue }
            journal.append(StateRecords.lock(name, holds: holds, startTime: startTime(of:)))
            persisted[name] = holds.isEmpty ? nil : holds
        }
        let fence = inspectTable { $0.currentFence }
        if fence >= reservedFence, reservedFence < LockTable.maximumFence {
            reservedFence = Self.reservation(above: fence)
            journal.append(StateRecords.fence(reservedFence))
        }
    }

    /// The next fence reservation: a block above `fence`, never past the largest fence.
    private static func reservation(above fence: UInt64) -> UInt64 {
        min(fence + fenceBlock, LockTable.maximumFence)
    }

    private func compactJournal() throws(StateJournal.Failure) {
        guard let journal else { return }
        persisted = [:]
        var records = [StateRecords.fence(reservedFence)]
        for name in table.locksWithDurableHolds.sorted() {
            let holds = table.durableHolds(of: name)
            persisted[name] = holds
            records.append(StateRecords.lock(name, holds: holds, startTime: startTime(of:)))
        }
        try journal.compact(to: records)
    }

    private func startTime(of pid: Int32) -> UInt64? { watchers[pid]?.startTime }
}
