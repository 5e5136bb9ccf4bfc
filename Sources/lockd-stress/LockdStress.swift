import ArgumentParser
import EtcdLauncher
import Foundation
import LockClient
import LockCore
import LockProtocol

/// The safety checker: many client processes hammer a few locks while their processes and lockd
/// itself are killed with SIGKILL; afterwards their logs are checked for what a lock service must
/// never do. Exits 1 on any violation.
@main
struct LockdStress: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lockd-stress",
        abstract: "Stress lockd with kills and crashes, then check mutual exclusion, fences and durability.",
        subcommands: [Run.self, Check.self, Worker.self], defaultSubcommand: Run.self)
}

extension LockdStress {
    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run a stress test (the default).")

        @Option(help: "Client processes at once.") var clients = 8
        @Option(help: "Seconds of load.") var seconds = 10.0
        @Option(help: "Locks they fight over.") var locks = 4
        @Option(help: "Token lease, seconds.") var ttl = 2.0
        @Option(help: "Seconds between kill -9 of a client, ±50% (0: never).") var killEvery = 0.5
        @Option(
            help:
                "Seconds between faults, ±50% (0: never): kill -9 and restart of lockd; in a cluster also a node stopped past its lease and the etcd leader killed."
        )
        var restartEvery = 2.0
        @Flag(help: "Run lockd nodes on a real 3-member etcd cluster (--backend etcd); clients spread over them.")
        var cluster = false
        @Option(help: "lockd nodes in a cluster run.") var nodes = 3
        @Option(help: "The nodes' etcd lease ttl in a cluster run, seconds.") var leaseTTL = 2
        @Option(help: "Random seed (default: the time).") var seed: UInt64?
        @Option(help: "Keep the logs in this directory.") var keep: String?

        func run() throws {
            let seed = self.seed ?? UInt64(Date().timeIntervalSince1970 * 1000)
            var random = SplitMix(seed: seed)
            let directory =
                keep ?? FileManager.default.temporaryDirectory.appendingPathComponent("lockd-stress-\(getpid())").path
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            defer { if keep == nil { try? FileManager.default.removeItem(atPath: directory) } }
            let binaries = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
                .deletingLastPathComponent().path
            let coordinatorLog = open(directory + "/coordinator.log", O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0o644)
            func note(_ event: StressEvent) {
                let bytes = Array(event.line.utf8)
                _ = bytes.withUnsafeBytes { write(coordinatorLog, $0.baseAddress, $0.count) }
            }

            let etcd = cluster ? try EtcdCluster() : nil
            if cluster { note(.init(time: now(), kind: .clusterRun)) }
            let nodeCount = cluster ? max(1, nodes) : 1
            let sockets = (0..<nodeCount).map { directory + "/lockd-\($0).sock" }
            func startNode(_ node: Int) throws -> Process {
                var arguments = [
                    "--socket", sockets[node], "--config", "/dev/null", "--state-dir", directory + "/state-\(node)",
                    "--log-level", "warning",
                ]
                if let etcd {
                    let endpoints = etcd.endpoints.indices.map { etcd.endpoints[(node + $0) % etcd.endpoints.count] }
                    arguments += [
                        "--backend", "etcd", "--etcd-endpoints", endpoints.joined(separator: ","), "--node", "n\(node)",
                        "--lease-ttl", "\(leaseTTL)",
                    ]
                }
                return try startLockd(binaries: binaries, directory: directory, socket: sockets[node], arguments)
            }
            var lockds = try (0..<nodeCount).map(startNode)
            var workers: [Int: Process] = [:]
            var nextWorker = 0
            func spawnWorker() throws {
                let node = nextWorker % nodeCount
                let process = Process()
                process.executableURL = URL(fileURLWithPath: binaries + "/lockd-stress")
                process.arguments = [
                    "worker", "--socket", sockets[node], "--id", "\(nextWorker)", "--log",
                    directory + "/worker-\(nextWorker).log",
                    "--locks", "\(locks)", "--ttl", "\(ttl)", "--seed", "\(random.next())",
                ]
                note(.init(time: now(), kind: .workerStarted, detail: "\(nextWorker) \(node)"))
                try process.run()
                workers[nextWorker] = process
                nextWorker += 1
            }
            for _ in 0..<clients { try spawnWorker() }

            let start = now()
            var nextKill = start + jittered(mean: killEvery, &random)
            var nextFault = start + jittered(mean: restartEvery, &random)
            while now() < start + seconds {
                usleep(20_000)
                if killEvery > 0, now() >= nextKill, let victim = workers.keys.randomElement(using: &random) {
                    note(.init(time: now(), kind: .workerKilled, detail: "\(victim)"))
                    kill(workers[victim]!.processIdentifier, SIGKILL)
                    workers[victim] = nil
                    try spawnWorker()
                    nextKill = now() + jittered(mean: killEvery, &random)
                }
                guard restartEvery > 0, now() >= nextFault else { continue }
                let node = random.next(below: nodeCount)
                switch etcd == nil ? 0 : random.next(below: 3) {
                case 0:
                    note(.init(time: now(), kind: .lockdCrashed, detail: "\(node)"))
                    kill(lockds[node].processIdentifier, SIGKILL)
                    lockds[node].waitUntilExit()
                    lockds[node] = try startNode(node)
                    note(.init(time: now(), kind: .lockdRestarted, detail: "\(node)"))
                case 1:
                    // Stopped past its lease: etcd gives its locks away, and it must give them up.
                    note(.init(time: now(), kind: .nodePaused, detail: "\(node)"))
                    kill(lockds[node].processIdentifier, SIGSTOP)
                    usleep(UInt32((Double(leaseTTL) + 1) * 1e6))
                    kill(lockds[node].processIdentifier, SIGCONT)
                    note(.init(time: now(), kind: .nodeResumed, detail: "\(node)"))
                default:
                    if let etcd, let leader = etcd.leader() {
                        note(.init(time: now(), kind: .leaderKilled, detail: "\(leader)"))
                        etcd.kill(leader)
                        usleep(1_000_000)
                        try etcd.start(leader)
                        note(.init(time: now(), kind: .memberRestarted, detail: "\(leader)"))
                    }
                }
                nextFault = now() + jittered(mean: restartEvery, &random)
            }
            for (id, process) in workers {
                note(.init(time: now(), kind: .workerKilled, detail: "\(id)"))
                kill(process.processIdentifier, SIGKILL)
            }
            // Every owner is dead now; once the last lease runs out nothing may be held.
            usleep(UInt32((ttl + 0.5) * 1e6))
            let leftovers = try sockets.flatMap(remainingHolds(socket:))
            for lockd in lockds {
                lockd.terminate()
                lockd.waitUntilExit()
            }
            close(coordinatorLog)

            var checker = StressChecker(events: readLogs(in: directory))
            checker.checkLeftovers(leftovers)
            print("seed: \(seed)")
            print("clients: \(clients) at once, \(nextWorker) in all; locks: \(locks); seconds: \(seconds)")
            if cluster { print("nodes: \(nodeCount) on a 3-member etcd cluster, lease ttl \(leaseTTL) s") }
            try report(checker)
        }

        private func startLockd(binaries: String, directory: String, socket: String, _ arguments: [String]) throws
            -> Process
        {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: binaries + "/lockd")
            process.arguments = arguments
            if !FileManager.default.fileExists(atPath: directory + "/lockd.log") {
                _ = FileManager.default.createFile(atPath: directory + "/lockd.log", contents: nil)
            }
            let log = FileHandle(forWritingAtPath: directory + "/lockd.log")!
            log.seekToEndOfFile()
            process.standardError = log
            try process.run()
            for _ in 0..<500 {
                if (try? LockConnection(path: socket).call(.ping, timeout: 1)) != nil { return process }
                usleep(10_000)
            }
            throw ValidationError("lockd did not start; see \(directory)/lockd.log")
        }

        /// This node's own holders left (other nodes' keys show as owner `{"node": ...}`).
        private func remainingHolds(socket: String) throws -> [String] {
            let locks = try LockConnection(path: socket).call(.status(lock: nil), timeout: 10).locks ?? []
            return locks.flatMap { lock -> [String] in
                guard case .array(let holders)? = lock["holders"] else { return [] }
                return holders.filter { $0["owner"]?["node"] == nil }.map {
                    "\(lock["name"]?.string ?? "?") held by \($0["owner"]?.serialized ?? "?")"
                }
            }
        }

        /// Between half and one and a half times the mean: random, yet a short run still gets
        /// its kills and restarts.
        private func jittered(mean: Double, _ random: inout SplitMix) -> Double {
            mean * (0.5 + Double(random.next() >> 11) / Double(1 << 53))
        }
    }

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check the logs a run kept (--keep DIR) again, without running anything.")

        @Argument(help: "The directory of coordinator.log and worker-N.log.") var directory: String

        func run() throws {
            let checker = StressChecker(events: readLogs(in: directory))
            try report(checker)
        }
    }

    struct Worker: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One client process (started by run).")

        @Option var socket: String
        @Option var id: Int
        @Option var log: String
        @Option var locks: Int
        @Option var ttl: Double
        @Option var seed: UInt64

        func run() throws {
            let fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0o644)
            var worker = StressWorker(
                socket: socket, id: id, locks: locks, ttl: ttl, log: fd, random: SplitMix(seed: seed))
            worker.run()
        }
    }
}

/// The events of `coordinator.log` and every `worker-N.log` in `directory`.
func readLogs(in directory: String) -> [StressEvent] {
    var events: [StressEvent] = []
    let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
    for name in names where name.hasSuffix(".log") {
        let id: Int
        if name == "coordinator.log" {
            id = -1
        } else if name.hasPrefix("worker-"), let number = Int(name.dropFirst(7).dropLast(4)) {
            id = number
        } else {
            continue
        }
        guard let text = try? String(contentsOfFile: directory + "/" + name, encoding: .utf8) else { continue }
        events += text.split(separator: "\n").compactMap { StressEvent(line: $0, source: id) }
    }
    return events
}

/// Prints the counts and the first violations; exits 1 if there is any.
func report(_ checker: StressChecker) throws {
    print("operations: \(checker.operations)")
    print("grants: \(checker.holds.count)")
    print("client kills: \(checker.killCount)")
    print("lockd restarts: \(checker.restarts)")
    print("node pauses: \(checker.pauses)")
    print("etcd leader kills: \(checker.leaderKillCount)")
    print("violations: \(checker.violations.count)")
    for violation in checker.violations.prefix(20) { print("  \(violation)") }
    if !checker.violations.isEmpty { throw ExitCode(1) }
}
