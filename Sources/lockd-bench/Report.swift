import Foundation

/// The results of one benchmark run: a table for people, JSON for tools.
struct Report {
    let seconds: Double
    private(set) var rows: [(name: String, result: LoadResult)] = []

    init(seconds: Double) { self.seconds = seconds }

    mutating func add(_ name: String, _ result: LoadResult) { rows.append((name, result)) }

    private func row(_ name: String) -> LoadResult? { rows.first { $0.name == name }?.result }

    func print(redis: Bool) {
        Swift.print("step                      clients    pairs/s   pair p50   pair p99  first p99  failures")
        for (name, result) in rows {
            Swift.print(
                name.padding(toLength: 26, withPad: " ", startingAt: 0)
                    + String(
                        format: "%7d %10.0f %8.1fus %8.1fus %8.1fus %9d", result.clients, result.perSecond,
                        result.pairPercentile(0.5) * 1e6, result.pairPercentile(0.99) * 1e6,
                        result.firstPercentile(0.99) * 1e6, result.failures))
        }
        if let floor = row("floor"), let lockd = row("lockd uncontended") {
            Swift.print(
                String(
                    format: "uncontended pair p50 / floor (two round trips) p50: %.2fx (target <= 2.5x)",
                    lockd.pairPercentile(0.5) / floor.pairPercentile(0.5)))
        }
        if redis, let lockd = row("lockd distinct x64"), let redisRow = row("redis distinct x64") {
            Swift.print(
                String(
                    format: "64 clients, distinct locks: lockd / redis throughput: %.2fx (target >= 1)",
                    lockd.perSecond / redisRow.perSecond))
        }
        if let contended = row("lockd contended x64") {
            Swift.print(
                String(
                    format: "64 clients on one lock: hand-off wait p99 %.0fus (target < 1000us)",
                    contended.firstPercentile(0.99) * 1e6))
        }
        Swift.print("not measured by this version: 10k idle connections, 1M held locks, lockctl run vs flock")
    }

    func write(json path: String) throws {
        var steps: [[String: Any]] = []
        // JSON has no NaN: a step without samples reports null.
        func number(_ value: Double) -> Any { value.isFinite ? value : NSNull() }
        for (name, result) in rows {
            steps.append([
                "step": name, "clients": result.clients, "pairs_per_second": result.perSecond,
                "pair_p50_us": number(result.pairPercentile(0.5) * 1e6),
                "pair_p99_us": number(result.pairPercentile(0.99) * 1e6),
                "first_p50_us": number(result.firstPercentile(0.5) * 1e6),
                "first_p99_us": number(result.firstPercentile(0.99) * 1e6), "failures": result.failures,
            ])
        }
        var system = utsname()
        uname(&system)
        let machine = withUnsafeBytes(of: system.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let release = withUnsafeBytes(of: system.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let document: [String: Any] = [
            "date": ISO8601DateFormatter().string(from: Date()), "cpus": ProcessInfo.processInfo.activeProcessorCount,
            "kernel": release, "machine": machine, "seconds_per_step": seconds, "steps": steps,
        ]
        let data = try JSONSerialization.data(withJSONObject: document, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: URL(fileURLWithPath: path))
    }
}
