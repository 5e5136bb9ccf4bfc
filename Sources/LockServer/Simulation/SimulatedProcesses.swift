import LockCore

/// A process table for the whole-service fuzzer: processes start, exit and have their pids
/// reused at the fuzzer's command, and watches report exits as pidfds would.
final class SimulatedProcesses: ProcessMonitor {
    struct Process {
        var parent: Int32
        var uid: UInt32
        var start: UInt64
    }

    private(set) var running: [Int32: Process] = [:]
    private var watches: [Int32: [SimulatedWatch]] = [:]
    private var starts: UInt64 = 0

    /// Starts a process with `pid` (a reuse when that pid ran before).
    func spawn(_ pid: Int32, parent: Int32, uid: UInt32) {
        starts += 1
        running[pid] = Process(parent: parent, uid: uid, start: starts)
    }

    /// Ends a process; its watches report the exit.
    func exit(_ pid: Int32) {
        running[pid] = nil
        for watch in watches.removeValue(forKey: pid) ?? [] where !watch.stopped { watch.onExit() }
    }

    func startTime(of pid: Int32) -> UInt64? { running[pid]?.start }

    func watch(_ pid: Int32, onExit: @escaping @Sendable () -> Void) -> (any ProcessWatch)? {
        guard let process = running[pid] else { return nil }
        let watch = SimulatedWatch(pid: pid, startTime: process.start, processes: self, onExit: onExit)
        watches[pid, default: []].append(watch)
        return watch
    }

    func isSelfOrAncestor(_ ancestor: Int32, of pid: Int32) -> Bool {
        var current = pid
        for _ in 0..<64 {
            if current == ancestor { return true }
            guard let process = running[current], process.parent != current else { return false }
            current = process.parent
        }
        return false
    }

    func uid(of pid: Int32) -> UInt32? { running[pid]?.uid }

    func commandLine(of pid: Int32) -> String? {
        // Hostile command lines too: control characters and quotes reach status untouched.
        running[pid].map { "sim \(pid) \"quoted\"\u{1b}[31m\n\t" + String(repeating: "x", count: Int($0.start % 7)) }
    }

    func groups(of pid: Int32, primary: UInt32) -> Set<UInt32> { [primary, 4242] }
}

/// A pidfd's view of one simulated process.
final class SimulatedWatch: ProcessWatch {
    let pid: Int32
    let startTime: UInt64?
    let onExit: @Sendable () -> Void
    private unowned let processes: SimulatedProcesses
    private(set) var stopped = false

    init(pid: Int32, startTime: UInt64, processes: SimulatedProcesses, onExit: @escaping @Sendable () -> Void) {
        self.pid = pid
        self.startTime = startTime
        self.processes = processes
        self.onExit = onExit
    }

    var hasExited: Bool { !stopped && processes.startTime(of: pid) != startTime }

    func stop() { stopped = true }
}
