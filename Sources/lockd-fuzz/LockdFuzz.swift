import ArgumentParser
import Glibc
import LockServer

/// Runs the whole-service fuzzer (docs/fuzzing.md): seeded runs of random steps through the real
/// request handling, each checked after every step, until the time or the runs are used up.
@main
struct LockdFuzz: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lockd-fuzz",
        abstract: "Fuzz lockd's whole request handling in process, checking its promises after every step.")

    @Option(help: "Stop after this many seconds.")
    var seconds: Double = 20

    @Option(help: "The first run's seed; run N uses seed + N. Replays a failure exactly.")
    var seed: UInt64 = 1

    @Option(help: "Steps per run (each run starts a fresh lockd with fresh clients).")
    var steps: Int = 20_000

    @Option(help: "Stop after this many runs (0: no limit).")
    var runs: Int = 0

    @Option(help: "Where the runs keep their state journals.")
    var directory: String = "/dev/shm"

    func validate() throws {
        guard seconds > 0, seconds.isFinite else { throw ValidationError("--seconds must be > 0") }
        guard steps > 0 else { throw ValidationError("--steps must be > 0") }
        guard runs >= 0 else { throw ValidationError("--runs must be >= 0") }
    }

    func run() throws {
        let start = monotonicSeconds()
        var total = SimulationReport()
        var completed = 0
        while monotonicSeconds() - start < seconds, runs == 0 || completed < runs {
            let runSeed = seed &+ UInt64(completed)
            // Said before the run: a trap ends the process, and this line then names the seed.
            Stderr.write("lockd-fuzz: run with seed \(runSeed)\n")
            do {
                let simulation = try ServiceSimulation(seed: runSeed, directory: directory)
                total.add(try simulation.run(steps: steps))
            } catch let failure as SimulationFailure {
                print("FAILED: \(failure)")
                print("replay: lockd-fuzz --seed \(failure.seed) --runs 1 --steps \(failure.step)")
                throw ExitCode(1)
            }
            completed += 1
        }
        let elapsed = monotonicSeconds() - start
        let rate = Int(Double(total.steps) / max(elapsed, 1e-9))
        let last = seed &+ UInt64(max(completed, 1) - 1)
        print(
            "lockd-fuzz: \(completed) runs (seeds \(seed)...\(last)), \(total.summary); \(rate) steps/s; no promise broken"
        )
    }

    private func monotonicSeconds() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }
}

private enum Stderr {
    static func write(_ text: String) {
        var bytes = Array(text.utf8)
        _ = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }
}
