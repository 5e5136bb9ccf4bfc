import ArgumentParser
import AsyncLockClient
import Foundation
import LockClient
import LockCore

/// Measures LockCore's in-process primitives against the seed's Python ones
/// (whatamithinking-aiotools, run by scripts/seed_bench.py), and the async client's withLock
/// against the blocking LockConnection on the same lockd, all in one run.
@main
struct LockCoreBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lockcore-bench",
        abstract: "Benchmark LockCore's async primitives against the seed's and LockdClient against LockConnection.")

    @Option(help: "Operations per round for the per-operation steps.") var operations = 1_000_000
    @Option(help: "Rounds per step; the median is reported.") var rounds = 5
    @Option(help: "Seconds per round of the hand-off and client steps.") var seconds = 1.0
    @Option(help: "The Python with whatamithinking-aiotools installed (the seed side is skipped without it).")
    var python: String?
    @Option(help: "The seed's benchmark script.") var seedScript = "scripts/seed_bench.py"
    @Option(help: "Where to write the JSON results.") var json = "lockcore-bench.json"
    @Flag(help: "Only the client step (for profiling it).") var clientOnly = false

    func run() async throws {
        let swift =
            clientOnly ? [:] : try await measurePrimitives(operations: operations, rounds: rounds, seconds: seconds)
        let seed = clientOnly ? nil : try python.map { try runSeed(python: $0) }
        let binaries = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
            .deletingLastPathComponent().path
        let client = try await measureClient(lockd: binaries + "/lockd", rounds: rounds, seconds: seconds)
        let report = BenchReport(swift: swift, seed: seed, client: client)
        print(report.table)
        try report.json.write(toFile: json, atomically: true, encoding: .utf8)
        print("(written to \(json))")
    }

    private func runSeed(python: String) throws -> [String: Double] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [seedScript, "--rounds", String(rounds), "--seconds", String(seconds)]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0,
            let values = try JSONSerialization.jsonObject(with: data) as? [String: Double]
        else { throw ValidationError("the seed's benchmark failed: \(String(decoding: data, as: UTF8.self))") }
        return values
    }
}

/// Nanoseconds on the monotonic clock.
func nanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted[sorted.count / 2]
}
