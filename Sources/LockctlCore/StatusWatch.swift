import Glibc
import LockClient
import LockCore
import LockProtocol

/// `lockctl status --watch`: the `watch` op's snapshot, then its `changed` events, until a signal
/// or until lockd goes away (exit 69).
package struct StatusWatch {
    package var name: String?
    package var json: Bool
    package var since: Bool

    package func run(_ connection: LockConnection, lock: LockName?, _ context: String) throws(ExitCode) -> Never {
        let signals = TerminationSignals()
        let answer = try call(connection, context, .watch(lock: lock))
        var locks: [String: JSONValue] = [:]
        for record in answer.locks ?? [] { if let name = record["name"]?.string { locks[name] = record } }
        // On a terminal the table is redrawn in place, also every second for the ages; into a pipe
        // or file each change appends one table, and nothing is written while nothing changes.
        let terminal = isatty(1) == 1
        if json {
            printLine(JSONValue.object([("locks", .array(answer.locks ?? []))]).serialized)
        } else {
            draw(locks, terminal: terminal)
        }
        while true {
            var changed = false
            while let event = connection.takeRawBacklog() { changed = apply(event, to: &locks) || changed }
            if !connection.hasBufferedMessage {
                let ready = waitReadable([connection.fd, signals.fd], timeout: terminal ? 1000 : -1)
                if ready[1], let first = signals.drain().first { CommandEnd.signaled(first.signal).finish() }
                if !ready[0] {
                    if terminal, !json { draw(locks, terminal: true) }
                    continue
                }
            }
            do {
                // Everything already here, then one redraw.
                guard let event = try connection.readJSON(timeout: 0) else { continue }
                changed = apply(event, to: &locks) || changed
                while connection.hasBufferedMessage, let more = try connection.readJSON(timeout: 0) {
                    changed = apply(more, to: &locks) || changed
                }
            } catch {
                throw fail(context, error)
            }
            if changed, !json { draw(locks, terminal: terminal) }
        }
    }

    /// Applies one `changed` event (printing it with --json); whether the table changed.
    private func apply(_ event: JSONValue, to locks: inout [String: JSONValue]) -> Bool {
        guard event["event"] == "changed", let lock = event["lock"]?.string else { return false }
        if json { printLine(event.serialized) }
        locks[lock] = event["locks"]?.elements.first
        return true
    }

    private func draw(_ locks: [String: JSONValue], terminal: Bool) {
        let sorted = locks.keys.sorted().compactMap { locks[$0] }
        var text = terminal ? "\u{1B}[H\u{1B}[2J" : ""
        text += "lockd locks at \(Timestamp.format(wallClock()))" + (terminal ? " (Ctrl-C to stop)" : "") + "\n"
        if sorted.isEmpty {
            text += name.map { "lock \"\($0)\" is free" } ?? "no locks held"
        } else {
            text += StatusTable(locks: sorted, now: wallClock(), absolute: since).lines.joined(separator: "\n")
        }
        printLine(terminal ? text : text + "\n")
    }
}
