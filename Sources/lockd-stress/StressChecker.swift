/// Reads the logs of a stress run and checks what a lock service promises.
struct StressChecker {
    /// One grant as the logs tell it.
    struct Hold {
        var lock: String
        var fence: UInt64
        var owner: String
        var worker: Int
        var acquireSent: Double
        var granted: Double
        var releaseSent: Double?
        var releaseError: String?
        /// When the release was answered (a break sent before then may have come first).
        var releaseAnswered: Double?
        var ttl: Double
        /// Why lockd said it took the hold away, when it did.
        var revoked: String?
        /// The lockd node the worker talked to (0 on a single host).
        var node = 0
        /// The earliest moment lockd may have taken the hold away (see ``earliestEnd``).
        var end = Double.infinity
    }

    private(set) var holds: [Hold] = []
    private var breaks: [String: [(sent: Double, done: Double?)]] = [:]
    private var kills: [Int: Double] = [:]
    /// lockd crashes, with the node (0 on a single host).
    private var crashes: [(time: Double, node: Int)] = []
    private var workerNodes: [Int: Int] = [:]
    private var paused: [(time: Double, node: Int)] = []
    private var leaderKills: [Double] = []
    /// Whether the nodes shared their locks through etcd: then a node's crash, pause or the etcd
    /// leader's death may take any of its holds (`lost`, or dropped at its restart).
    private var isCluster = false
    private(set) var operations = 0
    private(set) var violations: [String] = []

    init(events: [StressEvent]) {
        var open: [Int: Int] = [:]  // worker -> index of its latest hold
        var sent: [Int: (Double, Double)] = [:]  // worker -> (acquire sent, ttl)
        for event in events.sorted(by: { $0.time < $1.time }) {
            switch event.kind {
            case .acquireSent:
                operations += 1
                sent[event.source] = (event.time, Double(event.detail) ?? 0)
            case .granted:
                let (acquireSent, ttl) = sent[event.source] ?? (event.time, 0)
                holds.append(
                    Hold(
                        lock: event.lock, fence: event.fence, owner: event.owner, worker: event.source,
                        acquireSent: acquireSent, granted: event.time, ttl: ttl))
                open[event.source] = holds.count - 1
            case .releaseSent:
                operations += 1
                // A release lost with a crashed lockd is sent again; the first is the earliest end.
                if let index = open[event.source], holds[index].fence == event.fence, holds[index].releaseSent == nil {
                    holds[index].releaseSent = event.time
                }
            case .releaseFailed:
                if let index = open[event.source], holds[index].fence == event.fence {
                    holds[index].releaseError = event.detail
                    holds[index].releaseAnswered = event.time
                }
            case .released:
                if let index = open[event.source], holds[index].fence == event.fence {
                    holds[index].releaseAnswered = event.time
                }
            case .breakSent:
                operations += 1
                breaks[event.lock, default: []].append((event.time, nil))
            case .breakDone:
                if let index = breaks[event.lock]?.lastIndex(where: { $0.done == nil }) {
                    breaks[event.lock]![index].done = event.time
                }
            case .shield:
                operations += 1
            case .revoked:
                if let index = open[event.source], holds[index].lock == event.lock, holds[index].revoked == nil {
                    holds[index].revoked = event.detail
                }
            case .workerKilled:
                if let worker = Int(event.detail) { kills[worker] = event.time }
            case .lockdCrashed:
                crashes.append((event.time, Int(event.detail) ?? 0))
            case .lockdRestarted, .nodeResumed, .memberRestarted:
                break
            case .workerStarted:
                let parts = event.detail.split(separator: " ").compactMap { Int($0) }
                if parts.count == 2 { workerNodes[parts[0]] = parts[1] }
            case .clusterRun:
                isCluster = true
            case .nodePaused:
                paused.append((event.time, Int(event.detail) ?? 0))
            case .leaderKilled:
                leaderKills.append(event.time)
            }
        }
        for index in holds.indices {
            holds[index].node = workerNodes[holds[index].worker] ?? 0
            holds[index].end = earliestEnd(of: holds[index])
        }
        checkExclusion()
        checkFences()
        checkDurability()
    }

    var killCount: Int { kills.count }
    var restarts: Int { crashes.count }
    var pauses: Int { paused.count }
    var leaderKillCount: Int { leaderKills.count }

    /// The first cluster fault after `time` that may take a hold on `node` away: its crash, its
    /// pause, or the etcd leader's death (which may outlast the node's deadline).
    private func clusterFault(on node: Int, after time: Double) -> Double? {
        guard isCluster else { return nil }
        let faults =
            crashes.filter { $0.node == node }.map(\.time) + paused.filter { $0.node == node }.map(\.time) + leaderKills
        return faults.filter { $0 > time }.min()
    }

    /// The earliest time lockd may have removed the hold: the release request, a break sent
    /// after the acquire, the owner's death (a killed worker; a lockd crash for session holds),
    /// or a token lease running out. Never later than the truth, so no false violations.
    private func earliestEnd(of hold: Hold) -> Double {
        var end = hold.releaseSent ?? .infinity
        for entry in breaks[hold.lock] ?? [] where (entry.done ?? .infinity) > hold.acquireSent {
            end = min(end, max(entry.sent, hold.acquireSent))
        }
        if let killed = kills[hold.worker], killed > hold.acquireSent, !hold.owner.hasPrefix("token:") {
            end = min(end, killed)
        }
        if hold.owner == "session",
            let crash = crashes.first(where: { $0.time > hold.acquireSent && $0.node == hold.node })
        {
            end = min(end, crash.time)
        }
        if let fault = clusterFault(on: hold.node, after: hold.acquireSent) { end = min(end, fault) }
        // A node revokes `lost` at its own deadline, which the logs do not show; any time after
        // the grant is possible.
        if hold.revoked == "lost" { end = min(end, hold.granted) }
        if hold.owner.hasPrefix("token:") { end = min(end, hold.acquireSent + hold.ttl) }
        return end
    }

    /// No two exclusive holders at once: a grant may not arrive before an earlier hold could end.
    ///
    /// "Earlier" is lockd's order, which fences give (they grow across restarts too), not the
    /// order in which workers read their grants: a worker that reads its grant late may find it
    /// already broken, and a later grant already read by another worker. A hold granted after
    /// another (a larger fence) is a violation when its grant was read before the other could
    /// have ended: the read is never earlier than the grant, the earliest end never later than
    /// the end.
    private mutating func checkExclusion() {
        for (lock, list) in Dictionary(grouping: holds, by: \.lock) {
            var latest: Hold?
            for hold in list.sorted(by: { $0.fence < $1.fence }) {
                if let previous = latest, hold.granted < previous.end {
                    violations.append(
                        "two exclusive holders of \(lock): fence \(previous.fence) (\(previous.owner), worker "
                            + "\(previous.worker)) and fence \(hold.fence) (\(hold.owner), worker \(hold.worker)) "
                            + "granted \(hold.granted - previous.granted)s later")
                }
                if latest == nil || hold.end > latest!.end { latest = hold }
            }
        }
    }

    /// Fences strictly increase per lock: a grant requested after another was granted has a
    /// larger fence, across restarts too.
    private mutating func checkFences() {
        for (lock, list) in Dictionary(grouping: holds, by: \.lock) {
            let byGrant = list.sorted { $0.granted < $1.granted }
            var next = 0
            var highest: Hold?
            for hold in list.sorted(by: { $0.acquireSent < $1.acquireSent }) {
                while next < byGrant.count, byGrant[next].granted < hold.acquireSent {
                    if highest == nil || byGrant[next].fence > highest!.fence { highest = byGrant[next] }
                    next += 1
                }
                if let highest, hold.fence <= highest.fence {
                    violations.append(
                        "fence went back on \(lock): \(hold.fence) granted after \(highest.fence) had been")
                }
            }
        }
    }

    /// A hold acknowledged as durable (pid, token) is still there when its owner releases it,
    /// unless a break, a lease end or (for session holds) a lockd crash explains its absence.
    private mutating func checkDurability() {
        for hold in holds where hold.releaseError != nil {
            guard let releaseSent = hold.releaseSent, let answered = hold.releaseAnswered else { continue }
            let broken = (breaks[hold.lock] ?? []).contains {
                ($0.done ?? .infinity) > hold.acquireSent && $0.sent < answered
            }
            let crashed = crashes.contains { $0.time > hold.acquireSent && $0.time < answered && $0.node == hold.node }
            let expired = hold.owner.hasPrefix("token:") && answered >= hold.acquireSent + hold.ttl
            // A release sent just before a crash may have been done (and journaled) unanswered.
            let releasedUnanswered = crashes.contains { $0.time > releaseSent && $0.time < answered }
            let lost =
                hold.revoked == "lost"
                || (clusterFault(on: hold.node, after: hold.acquireSent).map { $0 < answered } ?? false)
            let explained =
                broken || expired || releasedUnanswered || lost || (hold.owner == "session" && crashed)
            if !explained {
                violations.append(
                    "hold lost: \(hold.lock) fence \(hold.fence) of \(hold.owner) (worker \(hold.worker)) "
                        + "answered \(hold.releaseError!) at release\(crashed ? " after a lockd restart" : "")")
            }
        }
    }

    /// Holds left when every owner is dead and every lease has run out.
    mutating func checkLeftovers(_ leftovers: [String]) {
        for leftover in leftovers { violations.append("hold left behind by a dead owner: \(leftover)") }
    }
}
