import ArgumentParser
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
        @Option(help: "Seconds between kill -9 and restart of lockd, ±50% (0: never).") var restartEvery = 2.0
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
            let socket = directory + "/lockd.sock"
            let coordinatorLog = open(directory + "/coordinator.log", O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0o644)
            func note(_ event: StressEvent) {
                let bytes = Array(event.line.utf8)
                _ = bytes.withUnsafeBytes { write(coordinatorLog, $0.baseAddress, $0.count) }
            }

            var lockd = try startLockd(binaries: binaries, directory: directory, socket: socket)
            var workers: [Int: Process] = [:]
            var nextWorker = 0
            func spawnWorker() throws {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: binaries + "/lockd-stress")
                process.arguments = [
                    "worker", "--socket", socket, "--id", "\(nextWorker)", "--log",
                    directory + "/worker-\(nextWorker).log",
                    "--locks", "\(locks)", "--ttl", "\(ttl)", "--seed", "\(random.next())",
                ]
                try process.run()
                workers[nextWorker] = process
                nextWorker += 1
            }
            for _ in 0..<clients { try spawnWorker() }

            let start = now()
            var nextKill = start + jittered(mean: killEvery, &random)
            var nextRestart = start + jittered(mean: restartEvery, &random)
            while now() < start + seconds {
                usleep(20_000)
                if killEvery > 0, now() >= nextKill, let victim = workers.keys.randomElement(using: &random) {
                    note(.init(time: now(), kind: .workerKilled, detail: "\(victim)"))
                    kill(workers[victim]!.processIdentifier, SIGKILL)
                    workers[victim] = nil
                    try spawnWorker()
                    nextKill = now() + jittered(mean: killEvery, &random)
                }
                if restartEvery > 0, now() >= nextRestart {
                    note(.init(time: now(), kind: .lockdCrashed))
                    kill(lockd.processIdentifier, SIGKILL)
                    lockd.waitUntilExit()
                    lockd = try startLockd(binaries: binaries, directory: directory, socket: socket)
                    note(.init(time: now(), kind: .lockdRestarted))
                    nextRestart = now() + jittered(mean: restartEvery, &random)
                }
            }
            for (id, process) in workers {
                note(.init(time: now(), kind: .workerKilled, detail: "\(id)"))
                kill(process.processIdentifier, SIGKILL)
            }
            // Every owner is dead now; once the last lease runs out nothing may be held.
            usleep(UInt32((ttl + 0.5) * 1e6))
            let leftovers = try remainingHolds(socket: socket)
            lockd.terminate()
            lockd.waitUntilExit()
            close(coordinatorLog)

            var checker = StressChecker(events: readLogs(in: directory))
            checker.checkLeftovers(leftovers)
            print("seed: \(seed)")
            print("clients: \(clients) at once, \(nextWorker) in all; locks: \(locks); seconds: \(seconds)")
            try report(checker)
        }

        private func startLockd(binaries: String, directory: String, socket: String) throws -> Process {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: binaries + "/lockd")
            process.arguments = [
                "--socket", socket, "--config", "/dev/null", "--state-dir", directory + "/state", "--log-level",
                "warning",
            ]
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

        private func remainingHolds(socket: String) throws -> [String] {
            let locks = try LockConnection(path: socket).call(.status(lock: nil), timeout: 10).locks ?? []
            return locks.flatMap { lock -> [String] in
                guard case .array(let holders)? = lock["holders"] else { return [] }
                return holders.map { "\(lock["name"]?.string ?? "?") held by \($0["owner"]?.serialized ?? "?")" }
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
    print("violations: \(checker.violations.count)")
    for violation in checker.violations.prefix(20) { print("  \(violation)") }
    if !checker.violations.isEmpty { throw ExitCode(1) }
}
