import Glibc
import LockCore
import LockProtocol

/// What lockctl says once when an acquire has waited about a second: who holds the lock, and
/// when the holder is lockctl's own ancestor (the shell that ran it, a `lockctl run` around it),
/// that the wait cannot end by itself.
package struct WaitReport {
    package let name: LockName
    package let locks: [JSONValue]

    package var message: String? {
        let holders = locks.first?["holders"]?.elements ?? []
        guard !holders.isEmpty else { return nil }
        let ancestry = Self.ancestors()
        var parts: [String] = []
        var deadlocked = false
        for holder in holders.prefix(3) {
            guard case .int(let pid)? = holder["pid"] else { continue }
            let command = holder["cmdline"]?.string.map { StatusTable.printable(String($0.prefix(40))) } ?? "?"
            var part = "pid \(pid) (\(command))"
            if pid == Int64(getpid()) {
                // The shell ran lockctl with exec (a script's last command): the hold is this
                // very process's, and it waits for itself.
                deadlocked = true
                part += ", this very process (the shell that held it became this lockctl by exec)"
            } else if let depth = ancestry.firstIndex(where: { Int64($0) == pid }) {
                deadlocked = true
                part += depth == 0 ? ", your parent shell" : ", an ancestor of this lockctl"
            }
            parts.append(part)
        }
        if holders.count > 3 { parts.append("\(holders.count - 3) more") }
        var text = "waiting for \"\(name)\": held by " + parts.joined(separator: ", ")
        if deadlocked {
            text += "; it waits for this command, so this wait cannot end by itself (Ctrl-C to stop)"
        }
        return text
    }

    /// lockctl's ancestors, parent first, read from /proc.
    package static func ancestors() -> [Int32] {
        var chain: [Int32] = []
        var pid = getppid()
        while pid > 1, chain.count < 64 {
            chain.append(pid)
            guard let parent = parentOf(pid) else { break }
            pid = parent
        }
        return chain
    }

    private static func parentOf(_ pid: Int32) -> Int32? {
        let fd = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 512)
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0, let close = buffer[..<count].lastIndex(of: UInt8(ascii: ")")) else { return nil }
        let fields = buffer[(close + 2)..<count].split(separator: UInt8(ascii: " "))
        guard fields.count > 1 else { return nil }
        return Int32(String(decoding: fields[1], as: UTF8.self))
    }
}
