import Foundation
import LockClient

/// Step 5 of the benchmark: memory and latency with many idle connections and many held locks;
/// and the process starter step 6 (``ShellTimes``) uses.
enum ScaleAndShell {
    /// lockd's resident set, in MiB, from /proc.
    static func rss(of pid: Int32) -> Double {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kib = Double(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        else { return .nan }
        return kib / 1024
    }

    /// Median acquire+release pair on one fresh connection, `samples` times.
    static func pairMedian(socket: String, lock: String, samples: Int = 2000) -> Double {
        guard let client = RawLineClient(path: socket) else { return .nan }
        let ok = Array(#""ok":true"#.utf8)
        let acquire = Array("{\"op\":\"acquire\",\"id\":1,\"lock\":\"\(lock)\"}\n".utf8)
        let release = Array("{\"op\":\"release\",\"id\":2,\"lock\":\"\(lock)\"}\n".utf8)
        var latencies: [Double] = []
        for _ in 0..<samples {
            let before = LockConnection.monotonicSeconds()
            client.roundTrip(acquire, expect: ok)
            client.roundTrip(release, expect: ok)
            latencies.append(LockConnection.monotonicSeconds() - before)
        }
        latencies.sort()
        return latencies[latencies.count / 2]
    }

    struct Scale {
        var baseRSS: Double
        var idle: Int
        var idleRSS: Double
        var pairWithIdle: Double
        var held: Int
        var heldRSS: Double
        var pairEmpty: Double
        var pairWithHeld: Double
        /// The same pair once the held locks are gone again: measured next to `pairWithHeld`,
        /// so both see the machine in the same state.
        var pairAfterRelease: Double
        var heldPerSecond: Double
    }

    static func scale(socket: String, pid: Int32, idle: Int, held: Int) -> Scale {
        let pairEmpty = pairMedian(socket: socket, lock: "probe")
        let baseRSS = rss(of: pid)
        var connections: [RawLineClient] = []
        connections.reserveCapacity(idle)
        for _ in 0..<idle {
            guard let client = RawLineClient(path: socket) else { break }
            connections.append(client)
        }
        // A ping on the last one makes sure lockd has accepted them all.
        connections.last?.roundTrip(Array("{\"op\":\"ping\",\"id\":1}\n".utf8), expect: Array("\"ok\":true".utf8))
        let idleCount = connections.count
        let idleRSS = rss(of: pid)
        let pairWithIdle = pairMedian(socket: socket, lock: "probe")
        connections.removeAll()

        var holder: RawLineClient! = RawLineClient(path: socket)
        let ok = Array(#""ok":true"#.utf8)
        let start = LockConnection.monotonicSeconds()
        var granted = 0
        let batch = 1000
        var index = 0
        while index < held {
            var bytes: [UInt8] = []
            let count = min(batch, held - index)
            for offset in 0..<count {
                bytes += Array(
                    "{\"op\":\"acquire\",\"id\":\(index + offset),\"lock\":\"held-\(index + offset)\"}\n".utf8)
            }
            guard holder.send(bytes) else { break }
            granted += holder.receive(count, expect: ok)
            index += count
        }
        let heldPerSecond = Double(granted) / (LockConnection.monotonicSeconds() - start)
        let heldRSS = rss(of: pid)
        let pairWithHeld = pairMedian(socket: socket, lock: "probe")
        // Closing the holder's connection releases its locks; a status on a fresh connection is
        // answered once lockd has done so.
        holder = nil
        if let probe = RawLineClient(path: socket) {
            _ = probe.roundTrip(Array("{\"op\":\"status\",\"id\":1,\"lock\":\"held-0\"}\n".utf8), expect: [])
        }
        let pairAfterRelease = pairMedian(socket: socket, lock: "probe")
        return Scale(
            baseRSS: baseRSS, idle: idleCount, idleRSS: idleRSS, pairWithIdle: pairWithIdle, held: granted,
            heldRSS: heldRSS, pairEmpty: pairEmpty, pairWithHeld: pairWithHeld, pairAfterRelease: pairAfterRelease,
            heldPerSecond: heldPerSecond)
    }

    /// Median wall time of running a command to its end, `runs` times, started with
    /// posix_spawn (Foundation's Process adds tens of milliseconds of its own).
    static func wallMedian(_ path: String, _ arguments: [String], environment: [String: String], runs: Int) -> Double {
        let merged = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let envp = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        var times: [Double] = []
        for _ in 0..<runs {
            var pid: pid_t = 0
            let before = LockConnection.monotonicSeconds()
            guard posix_spawn(&pid, path, &actions, nil, argv, envp) == 0 else { return .nan }
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0, errno == EINTR {}
            times.append(LockConnection.monotonicSeconds() - before)
        }
        times.sort()
        return times[times.count / 2]
    }
}

/// Step 6: whole-process wall times of lockctl's commands against flock(1)'s, in one run.
struct ShellTimes {
    var lockctlRun: Double
    var flock: Double
    var `true`: Double
    /// Per iteration of a script's own loop: two lockctl processes against two flock(1) calls on
    /// a descriptor the shell keeps open.
    var loopLockctl: Double
    var loopFlock: Double
    var version: Double
    var status: Double

    init(lockctl: String, socket: String, directory: String, runs: Int) {
        let file = directory + "/flock-file"
        _ = FileManager.default.createFile(atPath: file, contents: nil)
        let environment = ["LOCKD_SOCKET": socket]
        let iterations = 20
        let loop = "for i in $(seq \(iterations)); do"
        let loopRuns = max(5, runs / iterations)
        func median(_ path: String, _ arguments: [String], _ environment: [String: String] = [:]) -> Double {
            ScaleAndShell.wallMedian(path, arguments, environment: environment, runs: runs)
        }
        lockctlRun = median(lockctl, ["run", "shell-bench", "--", "/bin/true"], environment)
        flock = median("/usr/bin/flock", [file, "/bin/true"])
        `true` = median("/bin/true", [])
        version = median(lockctl, ["--version"])
        status = median(lockctl, ["status", "shell-bench"], environment)
        loopLockctl =
            ScaleAndShell.wallMedian(
                "/bin/bash", ["-c", "\(loop) \"$0\" acquire shell-loop && \"$0\" release shell-loop; done", lockctl],
                environment: environment, runs: loopRuns) / Double(iterations)
        loopFlock =
            ScaleAndShell.wallMedian(
                "/bin/bash", ["-c", "exec 9>\"$0\"; \(loop) flock 9 && flock -u 9; done", file],
                environment: [:], runs: loopRuns) / Double(iterations)
    }
}
