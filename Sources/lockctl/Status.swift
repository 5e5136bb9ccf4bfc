import ArgumentParser
import LockProtocol

struct Status: DaemonCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show who holds and who waits for locks.")

    @Argument(help: "Only this lock.") var name: String?
    @Flag(help: "Print the protocol's JSON answer.") var json = false
    @OptionGroup var global: GlobalOptions
    @ParentCommand var lockctl: LockCtl

    func run() throws {
        let context = name.map { "status \"\($0)\"" } ?? "status"
        let lock = try name.map { (raw) throws(ExitCode) in try lockName(raw, context) }
        let connection = try connect(context)
        let locks = JSONValue.array(try call(connection, context, .status(lock: lock)).locks ?? [])
        if json {
            printLine(JSONValue.object([("locks", locks)]).serialized)
            return
        }
        guard case .array(let entries) = locks, !entries.isEmpty else {
            printLine(name == nil ? "no locks held" : "lock \"\(name!)\" is free")
            return
        }
        var rows = [
            ["LOCK", "STATE", "MODE", "FENCE", "OWNER", "PID", "COUNT", "SHIELD", "SINCE", "EXPIRES", "COMMAND"]
        ]
        for lock in entries {
            let lockName = lock["name"]?.string ?? "?"
            if case .array(let holders) = lock["holders"] ?? .null {
                for holder in holders {
                    rows.append([
                        lockName, "held", text(holder["mode"]), text(holder["fence"]), owner(holder["owner"]),
                        text(holder["pid"]), text(holder["count"]), text(holder["shielded"]), text(holder["since"]),
                        text(holder["expires"]), text(holder["cmdline"]),
                    ])
                }
            }
            if case .array(let waiters) = lock["waiters"] ?? .null {
                for waiter in waiters {
                    rows.append([
                        lockName, "waiting", text(waiter["mode"]), "-", owner(waiter["owner"]), text(waiter["pid"]),
                        "-", "-", text(waiter["since"]), "-", text(waiter["cmdline"]),
                    ])
                }
            }
        }
        let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            let cells = row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[column] - cell.count)
            }
            printLine(cells.joined(separator: "  "))
        }
    }

    private func text(_ value: JSONValue?) -> String {
        switch value {
        case .string(let string)?: string
        case nil, .null?: "-"
        case let other?: other.serialized
        }
    }

    private func owner(_ value: JSONValue?) -> String {
        if let session = value?["session"]?.string { return "session \(session)" }
        if let pid = value?["pid"] { return "pid \(pid.serialized)" }
        if let token = value?["token"]?.string { return "token \(token)" }
        return "-"
    }
}
