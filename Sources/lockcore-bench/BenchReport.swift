import Foundation

/// The table and JSON of one run: each Swift figure next to the seed's, with the ratio and the
/// issue's target.
struct BenchReport {
    var swift: Figures
    var seed: Figures?
    var client: Figures

    /// (step, Swift key, seed key, unit, whether more is better, target ratio)
    private static let comparisons: [(String, String, String, String, Bool, Double)] = [
        ("uncontended lock+unlock", "uncontended_ns", "uncontended_ns", "ns", false, 30),
        ("re-entrant lock+unlock", "reentrant_ns", "reentrant_ns", "ns", false, 30),
        ("hand-offs, 16 tasks", "handoffs_per_s", "handoffs_per_s", "/s", true, 5),
        ("shield enter+exit", "shield_ns", "shield_ns", "ns", false, 1),
    ]

    var table: String {
        var lines = [
            "| step | LockCore | seed (aiotools 1.0.2) | ratio | target |",
            "|---|---|---|---|---|",
        ]
        for (step, swiftKey, seedKey, unit, moreIsBetter, target) in Self.comparisons {
            let mine = swift[swiftKey] ?? .nan
            let theirs = seed?[seedKey] ?? .nan
            let ratio = moreIsBetter ? mine / theirs : theirs / mine
            let verdict = ratio.isNaN ? "" : (ratio >= target ? " met" : " NOT met")
            lines.append(
                "| \(step) | \(format(mine)) \(unit) | \(format(theirs)) \(unit) | \(format(ratio, digits: 1))× | ≥ \(format(target))×\(verdict) |"
            )
        }
        lines.append("")
        lines.append("| LockCore, other forms | median |")
        lines.append("|---|---|")
        for (label, key) in [
            ("AsyncLock lock+unlock", "asynclock_pair_ns"),
            ("ReentrantAsyncLock withLock, uncontended", "uncontended_withlock_ns"),
            ("ReentrantAsyncLock withLock, re-entrant", "reentrant_withlock_ns"),
            ("a shield on a plain Task (no Task.immediate)", "shield_plain_task_ns"),
            ("withShield on an actor", "shield_on_actor_ns"),
            ("a shield on a plain Task, on an actor", "shield_plain_task_on_actor_ns"),
        ] {
            lines.append("| \(label) | \(format(swift[key] ?? .nan)) ns |")
        }
        let blocking = client["blocking_pair_us"] ?? .nan
        let async = client["async_withlock_us"] ?? .nan
        lines.append("")
        lines.append("| lockd round trips, same lockd | median per acquire+release |")
        lines.append("|---|---|")
        lines.append("| LockConnection (blocking) | \(format(blocking, digits: 1)) µs |")
        lines.append(
            "| LockdClient.withLock (async, NIO) | \(format(async, digits: 1)) µs (\(format(async / blocking, digits: 2))×, target ≤ 1.5×) |"
        )
        return lines.joined(separator: "\n")
    }

    var json: String {
        let object: [String: Any] = ["swift": swift, "seed": seed ?? [:], "client": client]
        let data =
            (try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    private func format(_ value: Double, digits: Int = 0) -> String {
        guard value.isFinite else { return "–" }
        return String(format: "%.\(digits)f", value)
    }
}
