import Glibc

/// What lockd reads about client processes from /proc.
enum ProcFS {
    /// The parent pid of `pid`, or `nil` when the process is gone.
    static func parent(of pid: Int32) -> Int32? {
        statField(4, of: pid).flatMap { Int32($0) }
    }

    /// When `pid` started, in clock ticks since boot: with the pid it names one process for good,
    /// which a pid alone does not once pids are reused.
    static func startTime(of pid: Int32) -> UInt64? {
        statField(22, of: pid).flatMap { UInt64($0) }
    }

    /// Field `number` (1-based, as in proc(5)) of /proc/PID/stat, from the state (3) on.
    private static func statField(_ number: Int, of pid: Int32) -> String? {
        guard let stat = read("/proc/\(pid)/stat"), let close = stat.lastIndex(of: UInt8(ascii: ")")) else {
            return nil
        }
        // After "pid (comm) " come the state and the rest; comm may hold spaces and parentheses.
        let fields = stat[stat.index(after: close)...].split(separator: UInt8(ascii: " "))
        guard fields.count > number - 3 else { return nil }
        return String(decoding: fields[number - 3], as: UTF8.self)
    }

    /// The real uid of `pid`, or `nil` when the process is gone.
    static func uid(of pid: Int32) -> UInt32? {
        statusField("Uid:", of: pid)?.first.flatMap { UInt32($0) }
    }

    /// The supplementary groups of `pid` (empty when the process is gone).
    static func supplementaryGroups(of pid: Int32) -> [UInt32] {
        statusField("Groups:", of: pid)?.compactMap { UInt32($0) } ?? []
    }

    /// The values of one `Name:` line of /proc/PID/status.
    private static func statusField(_ name: String, of pid: Int32) -> [String]? {
        guard let status = read("/proc/\(pid)/status") else { return nil }
        for line in status.split(separator: UInt8(ascii: "\n")) where line.starts(with: name.utf8) {
            let fields = line.dropFirst(name.utf8.count).split(whereSeparator: {
                $0 == UInt8(ascii: "\t") || $0 == UInt8(ascii: " ")
            })
            return fields.map { String(decoding: $0, as: UTF8.self) }
        }
        return nil
    }

    /// Whether `ancestor` is `pid` itself or one of its ancestors.
    static func isSelfOrAncestor(_ ancestor: Int32, of pid: Int32) -> Bool {
        var current = pid
        for _ in 0..<256 {
            if current == ancestor { return true }
            guard current > 1, let next = parent(of: current) else { return false }
            current = next
        }
        return false
    }

    /// The command line of `pid`, arguments joined by spaces and cut at 256 bytes.
    static func commandLine(of pid: Int32) -> String? {
        guard var bytes = read("/proc/\(pid)/cmdline", limit: 256), !bytes.isEmpty else { return nil }
        if bytes.last == 0 { bytes.removeLast() }
        return String(decoding: bytes.map { $0 == 0 ? UInt8(ascii: " ") : $0 }, as: UTF8.self)
    }

    private static func read(_ path: String, limit: Int = 4096) -> [UInt8]? {
        try? FileSystem.contents(of: path, limit: limit)
    }
}
