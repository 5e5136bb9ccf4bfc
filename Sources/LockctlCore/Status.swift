import Glibc
import LockProtocol

/// `lockctl status`, read by either reader and validated.
package struct StatusInvocation: Invocation {
    package var name: String?
    package var json = false
    package var check = false
    package var since = false
    package var watch = false
    package var daemon = DaemonAddress()

    package init(
        name: String? = nil, json: Bool = false, check: Bool = false, since: Bool = false, watch: Bool = false,
        daemon: DaemonAddress = DaemonAddress()
    ) {
        self.name = name
        self.json = json
        self.check = check
        self.since = since
        self.watch = watch
        self.daemon = daemon
    }

    package func run() throws {
        failuresAsJSON = json
        let context = name.map { "status \"\($0)\"" } ?? "status"
        let lock = try name.map { (raw) throws(ExitCode) in try lockName(raw, context) }
        let connection = try daemon.connect(context)
        if watch { try StatusWatch(name: name, json: json, since: since).run(connection, lock: lock, context) }
        let locks = try call(connection, context, .status(lock: lock)).locks ?? []
        if check { throw ExitCode(locks.contains { !($0["holders"]?.elements.isEmpty ?? true) } ? 0 : 1) }
        if json {
            printLine(JSONValue.object([("locks", .array(locks))]).serialized)
            return
        }
        guard !locks.isEmpty else {
            printLine(name == nil ? "no locks held" : "lock \"\(name!)\" is free")
            return
        }
        for line in StatusTable(locks: locks, now: wallClock(), absolute: since).lines { printLine(line) }
    }

}

/// Seconds since the epoch, for ages in the table.
package func wallClock() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

/// The `status` table: one row per holder and waiter, at most ``width`` columns (the command line
/// is cut to fit), every cell escaped for the terminal.
package struct StatusTable {
    package static let width = 100
    package let locks: [JSONValue]
    package let now: Double
    package let absolute: Bool

    package var lines: [String] {
        // A lockd in a cluster names each entry's node: then the table gets a NODE column.
        let clustered = locks.contains { lock in
            (lock["holders"]?.elements ?? []).contains { $0["node"] != nil }
                || (lock["waiters"]?.elements ?? []).contains { $0["node"] != nil }
        }
        func withNode(_ row: [String], _ node: JSONValue?) -> [String] {
            guard clustered else { return row }
            return Array(row[..<5]) + [cell(node, limit: 12)] + Array(row[5...])
        }
        var rows = [
            withNode(
                [
                    "LOCK", "STATE", "MODE", "FENCE", "OWNER", "PID", "N", "SH", absolute ? "SINCE" : "AGE", "EXPIRES",
                    "COMMAND",
                ], "NODE")
        ]
        for lock in locks {
            let lockName = cell(lock["name"], limit: 24)
            for holder in lock["holders"]?.elements ?? [] {
                let state = holder["deferred"]?.string.map { $0 == "break" ? "breaking" : "expiring" } ?? "held"
                let row = [
                    lockName, state, mode(holder["mode"]), cell(holder["fence"]), owner(holder["owner"]),
                    cell(holder["pid"]), cell(holder["count"]), cell(holder["shielded"]), time(holder["since"]),
                    expiry(holder["expires"]), cell(holder["cmdline"], limit: .max),
                ]
                rows.append(withNode(row, holder["node"]))
            }
            for waiter in lock["waiters"]?.elements ?? [] {
                let row = [
                    lockName, "waiting", mode(waiter["mode"]), "-", owner(waiter["owner"]), cell(waiter["pid"]), "-",
                    "-", time(waiter["since"]), "-", cell(waiter["cmdline"], limit: .max),
                ]
                rows.append(withNode(row, waiter["node"]))
            }
        }
        let columns = rows[0].count
        let widths = (0..<columns).map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            var line = ""
            for column in 0..<columns - 1 {
                line += row[column] + String(repeating: " ", count: widths[column] - row[column].count + 2)
            }
            let room = max(8, Self.width - line.count)
            return line + truncated(row[columns - 1], to: room)
        }
    }

    private func cell(_ value: JSONValue?, limit: Int = 16) -> String {
        let text: String
        switch value {
        case .string(let string)?: text = string
        case nil, .null?: text = "-"
        case let other?: text = other.serialized
        }
        return truncated(Self.printable(text), to: limit)
    }

    private func mode(_ value: JSONValue?) -> String {
        value?.string == "exclusive" ? "excl" : cell(value)
    }

    private func owner(_ value: JSONValue?) -> String {
        if let session = value?["session"]?.string { return "session \(session)" }
        if let pid = value?["pid"] { return "pid \(pid.serialized)" }
        if let token = value?["token"]?.string { return truncated("token " + Self.printable(token), to: 24) }
        if let node = value?["node"]?.string { return truncated("node " + Self.printable(node), to: 24) }
        return "-"
    }

    private func time(_ value: JSONValue?) -> String {
        guard let text = value?.string, let since = Timestamp.parse(text) else { return cell(value) }
        return absolute ? text : Self.duration(now - since)
    }

    private func expiry(_ value: JSONValue?) -> String {
        guard let text = value?.string, let expires = Timestamp.parse(text) else { return cell(value) }
        if absolute { return text }
        return expires <= now ? "now" : "in " + Self.duration(expires - now)
    }

    private func truncated(_ text: String, to limit: Int) -> String {
        text.count <= limit ? text : String(text.prefix(max(0, limit - 1))) + "…"
    }

    /// `12s`, `3m05s`, `2h03m`, `4d02h`.
    package static func duration(_ seconds: Double) -> String {
        let total = Int(max(0, min(seconds, 1e12)))
        func two(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
        switch total {
        case ..<60: return "\(total)s"
        case ..<3600: return "\(total / 60)m\(two(total % 60))s"
        case ..<86400: return "\(total / 3600)h\(two(total / 60 % 60))m"
        default: return "\(total / 86400)d\(two(total / 3600 % 24))h"
        }
    }

    /// Text from other users as the terminal should show it: control and other non-printing
    /// characters (ESC, newline, C1 controls, DEL) as `\x1b`-style escapes, and the backslash
    /// doubled, so that nothing in a command line or token can move the cursor or recolour
    /// root's terminal.
    package static func printable(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            switch scalar.value {
            case 0x5C: out += "\\\\"
            case 0x09: out += "\\t"
            case 0x0A: out += "\\n"
            case 0x0D: out += "\\r"
            case 0..<0x20, 0x7F..<0xA0, 0x2028, 0x2029, 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069:
                let hex = String(scalar.value, radix: 16)
                out += scalar.value < 0x100 ? "\\x" + (hex.count < 2 ? "0" + hex : hex) : "\\u{\(hex)}"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}
