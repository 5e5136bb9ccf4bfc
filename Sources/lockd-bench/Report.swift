import Foundation

/// The results of one benchmark run: a table for people, JSON for tools.
struct Report {
    let seconds: Double
    private(set) var rows: [(name: String, result: LoadResult)] = []
    var scale: ScaleAndShell.Scale?
    var shell: ShellTimes?

    init(seconds: Double) { self.seconds = seconds }

    mutating func add(_ name: String, _ result: LoadResult) { rows.append((name, result)) }

    private func row(_ name: String) -> LoadResult? { rows.first { $0.name == name }?.result }

    func print(redis: Bool) {
        Swift.print(
            "step                      clients    pairs/s   pair p50   pair p99  first p99  failures  server CPU/pair")
        for (name, result) in rows {
            Swift.print(
                name.padding(toLength: 26, withPad: " ", startingAt: 0)
                    + String(
                        format: "%7d %10.0f %8.1fus %8.1fus %8.1fus %9d", result.clients, result.perSecond,
                        result.pairPercentile(0.5) * 1e6, result.pairPercentile(0.99) * 1e6,
                        result.firstPercentile(0.99) * 1e6, result.failures)
                    + (result.serverCPUPerPair.map { String(format: " %14.1fus", $0 * 1e6) } ?? ""))
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
                    format:
                        "64 clients, distinct locks: lockd / redis throughput: %.2fx (target >= 1); "
                        + "server CPU per pair: lockd %.1fus (%.0f%% user), redis %.1fus (%.0f%% user)",
                    lockd.perSecond / redisRow.perSecond, (lockd.serverCPUPerPair ?? .nan) * 1e6,
                    (lockd.serverUserShare ?? .nan) * 100, (redisRow.serverCPUPerPair ?? .nan) * 1e6,
                    (redisRow.serverUserShare ?? .nan) * 100))
        }
        for (clients, name) in [
            (16, "lockd contended x16"), (64, "lockd contended x64"), (64, "lockd contended+held x64"),
        ] {
            guard let contended = row(name) else { continue }
            let handOffs = contended.handOffs
            Swift.print(
                String(
                    format:
                        "%d clients on one lock%@: hand-off (release sent to next grant read) p50 %.0fus p99 %.0fus%@; "
                        + "whole wait in the queue p99 %.0fus",
                    clients, name.contains("held") ? " (each holding another)" : "",
                    LoadResult.percentile(handOffs, 0.5) * 1e6, LoadResult.percentile(handOffs, 0.99) * 1e6,
                    name == "lockd contended x64" ? " (target < 1000us)" : "", contended.firstPercentile(0.99) * 1e6))
        }
        if let shell {
            Swift.print(
                String(
                    format:
                        "shell: lockctl run NAME true %.2fms, flock FILE true %.2fms (%.2fx, target <= 1x); true alone %.2fms",
                    shell.lockctlRun * 1e3, shell.flock * 1e3, shell.lockctlRun / shell.flock, shell.true * 1e3))
            Swift.print(
                String(
                    format:
                        "shell loop, per iteration: lockctl acquire+release %.2fms, flock 9 + flock -u 9 %.2fms "
                        + "(%.2fx, target <= 1.5x)",
                    shell.loopLockctl * 1e3, shell.loopFlock * 1e3, shell.loopLockctl / shell.loopFlock))
            Swift.print(
                String(
                    format: "shell: lockctl --version %.2fms, lockctl status NAME %.2fms (target < 1.5ms)",
                    shell.version * 1e3, shell.status * 1e3))
        }
        if let scale {
            Swift.print(
                String(
                    format:
                        "scale: RSS %.1f MiB at start; %d idle connections: %.1f MiB (target < 200), pair p50 %.1fus",
                    scale.baseRSS, scale.idle, scale.idleRSS, scale.pairWithIdle * 1e6))
            Swift.print(
                String(
                    format:
                        "scale: %d held locks (%.0f acquires/s pipelined): %.1f MiB (target < 1024), pair p50 %.1fus; "
                        + "%.1fus right after they are released",
                    scale.held, scale.heldPerSecond, scale.heldRSS, scale.pairWithHeld * 1e6,
                    scale.pairAfterRelease * 1e6))
        }
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
                "server_cpu_per_pair_us": number((result.serverCPUPerPair ?? .nan) * 1e6),
                "server_user_share": number(result.serverUserShare ?? .nan),
            ])
            if name.contains("contended") {
                let handOffs = result.handOffs
                steps[steps.count - 1]["hand_off_p50_us"] = number(LoadResult.percentile(handOffs, 0.5) * 1e6)
                steps[steps.count - 1]["hand_off_p99_us"] = number(LoadResult.percentile(handOffs, 0.99) * 1e6)
            }
        }
        var system = utsname()
        uname(&system)
        let machine = withUnsafeBytes(of: system.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let release = withUnsafeBytes(of: system.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        var document: [String: Any] = [
            "date": ISO8601DateFormatter().string(from: Date()), "cpus": ProcessInfo.processInfo.activeProcessorCount,
            "kernel": release, "machine": machine, "seconds_per_step": seconds, "steps": steps,
        ]
        if let shell {
            document["shell"] = [
                "lockctl_run_ms": number(shell.lockctlRun * 1e3), "flock_ms": number(shell.flock * 1e3),
                "true_ms": number(shell.true * 1e3),
                "loop_lockctl_acquire_release_ms": number(shell.loopLockctl * 1e3),
                "loop_flock_lock_unlock_ms": number(shell.loopFlock * 1e3),
                "lockctl_version_ms": number(shell.version * 1e3), "lockctl_status_ms": number(shell.status * 1e3),
            ]
        }
        if let scale {
            document["scale"] = [
                "base_rss_mib": number(scale.baseRSS), "idle_connections": scale.idle,
                "idle_rss_mib": number(scale.idleRSS), "pair_p50_with_idle_us": number(scale.pairWithIdle * 1e6),
                "held_locks": scale.held, "held_rss_mib": number(scale.heldRSS),
                "pair_p50_empty_us": number(scale.pairEmpty * 1e6),
                "pair_p50_with_held_us": number(scale.pairWithHeld * 1e6),
                "pair_p50_after_release_us": number(scale.pairAfterRelease * 1e6),
                "held_acquires_per_second": number(scale.heldPerSecond),
            ]
        }
        let data = try JSONSerialization.data(withJSONObject: document, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: URL(fileURLWithPath: path))
    }
}
