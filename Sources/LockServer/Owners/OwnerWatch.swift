import LockCore
import NIOCore

/// What ends a hold or a wait without a request: an owner process exits, a token's lease runs
/// out, a waiter's deadline passes. ``OwnerWatch`` arms and disarms these and reports each one,
/// on the service's event loop, to its ``OwnerEvents``.
protocol OwnerEvents: AnyObject {
    func ownerExited(_ pid: Int32)
    func leaseRanOut(_ token: String)
    func waitRanOut(_ key: RequestKey)
}

/// Owns the pid watchers and the lease and wait timers. Confined to the service's event loop.
final class OwnerWatch {
    private let loop: any EventLoop
    let processes: any ProcessMonitor
    weak var events: (any OwnerEvents)?
    private var watchers: [Int32: any ProcessWatch] = [:]
    private var leaseTimers: [String: Scheduled<Void>] = [:]
    private var waitTimers: [RequestKey: Scheduled<Void>] = [:]

    init(loop: any EventLoop, processes: any ProcessMonitor) {
        self.loop = loop
        self.processes = processes
    }

    var isWatchingProcesses: Bool { !watchers.isEmpty }

    // MARK: - Processes

    /// The start time of a watched process, for the journal.
    func startTime(of pid: Int32) -> UInt64? { watchers[pid]?.startTime }

    /// Whether `pid` is watched.
    func isWatching(_ pid: Int32) -> Bool { watchers[pid] != nil }

    /// Opens a watch on `pid` without keeping it yet; `nil` when there is no such process.
    func open(_ pid: Int32) -> (any ProcessWatch)? {
        let loop = self.loop
        // The monitor may call from any thread: hop to the loop, where the watch lives.
        let bound = NIOLoopBound(WeakBox(self), eventLoop: loop)
        return processes.watch(pid) { loop.execute { bound.value.object?.delivered(pid) } }
    }

    /// Keeps a watch opened by ``open(_:)``.
    func keep(_ watch: any ProcessWatch) { watchers[watch.pid] = watch }

    /// Stops watching `pid`.
    func stopWatching(_ pid: Int32) { watchers.removeValue(forKey: pid)?.stop() }

    /// Reports an exit that happened but was not delivered yet, so a client that saw its owner
    /// exit and asks at once does not find the holds still there.
    func reapIfExited(_ pid: Int32) {
        if watchers[pid]?.hasExited == true { delivered(pid) }
    }

    /// ``reapIfExited(_:)`` for every watched process.
    func reapAll() {
        for pid in Array(watchers.keys) { reapIfExited(pid) }
    }

    private func delivered(_ pid: Int32) {
        guard let watch = watchers[pid], watch.hasExited else { return }
        watchers[pid] = nil
        events?.ownerExited(pid)
    }

    // MARK: - Timers

    /// Arms (or re-arms) the lease timer of `token` for a monotonic deadline.
    func armLease(_ token: String, deadline: UInt64) {
        leaseTimers[token]?.cancel()
        leaseTimers[token] = loop.assumeIsolated().scheduleTask(deadline: .uptimeNanoseconds(deadline)) {
            [weak self] in
            guard let self else { return }
            self.leaseTimers[token] = nil
            self.events?.leaseRanOut(token)
        }
    }

    func disarmLease(_ token: String) { leaseTimers.removeValue(forKey: token)?.cancel() }

    /// Arms the deadline of a queued acquire.
    func armWait(_ key: RequestKey, deadline: UInt64) {
        waitTimers[key] = loop.assumeIsolated().scheduleTask(deadline: .uptimeNanoseconds(deadline)) {
            [weak self] in
            guard let self else { return }
            self.waitTimers[key] = nil
            self.events?.waitRanOut(key)
        }
    }

    func disarmWait(_ key: RequestKey) { waitTimers.removeValue(forKey: key)?.cancel() }

    /// Stops every watch and timer (the service is finished).
    func stopAll() {
        for watch in watchers.values { watch.stop() }
        watchers = [:]
        for timer in leaseTimers.values { timer.cancel() }
        leaseTimers = [:]
        for timer in waitTimers.values { timer.cancel() }
        waitTimers = [:]
    }
}

/// A weak reference that can cross to the loop inside a `NIOLoopBound`.
private final class WeakBox<Object: AnyObject> {
    weak var object: Object?
    init(_ object: Object?) { self.object = object }
}
