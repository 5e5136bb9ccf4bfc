/// One line of a stress log: `time kind lock fence owner detail`, tab-separated.
///
/// Workers write each event with one write(2) as it happens, so a worker killed with SIGKILL
/// loses nothing it had already seen. Times are CLOCK_MONOTONIC seconds, which every process on
/// the host shares.
struct StressEvent {
    enum Kind: String {
        /// An acquire was sent (`owner` is session, pid or token; `detail` the token ttl).
        case acquireSent = "acq_sent"
        /// Its grant arrived, with the fence.
        case granted = "grant"
        /// A release was sent for the hold with `fence`.
        case releaseSent = "rel_sent"
        /// The release answered ok, or `detail` names its error code.
        case released = "rel_ok"
        case releaseFailed = "rel_err"
        /// lockd pushed a revocation of the worker's hold (`detail`: the reason).
        case revoked
        case breakSent = "break_sent"
        case breakDone = "break_ack"
        case shield
        /// The coordinator killed a worker (`detail` is its id), or lockd (crash; `detail` the node
        /// in a cluster run) and restarted it.
        case workerKilled = "kill_worker"
        case lockdCrashed = "crash_lockd"
        case lockdRestarted = "restart_lockd"
        /// Cluster runs: a worker started on a node (`detail`: "ID NODE"), a node stopped with
        /// SIGSTOP and continued (`detail`: the node), the etcd leader killed and restarted.
        case workerStarted = "spawn_worker"
        /// The run is a cluster run (noted first).
        case clusterRun = "cluster"
        case nodePaused = "pause_node"
        case nodeResumed = "resume_node"
        case leaderKilled = "kill_leader"
        case memberRestarted = "restart_member"
    }

    var time: Double
    var kind: Kind
    var lock: String = "-"
    var fence: UInt64 = 0
    var owner: String = "-"
    var detail: String = "-"
    /// Which log the event came from (the worker id, or -1 for the coordinator).
    var source = -1

    var line: String {
        "\(time)\t\(kind.rawValue)\t\(lock)\t\(fence)\t\(owner)\t\(detail)\n"
    }

    init(time: Double, kind: Kind, lock: String = "-", fence: UInt64 = 0, owner: String = "-", detail: String = "-") {
        self.time = time
        self.kind = kind
        self.lock = lock
        self.fence = fence
        self.owner = owner
        self.detail = detail
    }

    init?(line: Substring, source: Int) {
        let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
        guard fields.count == 6, let time = Double(fields[0]), let kind = Kind(rawValue: String(fields[1])),
            let fence = UInt64(fields[3])
        else { return nil }
        self.init(
            time: time, kind: kind, lock: String(fields[2]), fence: fence, owner: String(fields[4]),
            detail: String(fields[5]))
        self.source = source
    }
}
