import ArgumentParser
import LockClient
import LockProtocol
import LockctlCore

extension CompletionKind {
    /// Completes lock names from lockd's `status` (the socket from `--socket` on the command line
    /// being completed, else the usual candidates); nothing when lockd cannot be reached.
    static let lockNames = CompletionKind.custom { words, _, prefix in
        let explicit = words.firstIndex(of: "--socket").flatMap { words.indices.contains($0 + 1) ? words[$0 + 1] : nil }
        guard let connection = try? LockConnection.connect(toFirstOf: SocketPath.candidates(explicit)),
            let answer = try? connection.call(.status(lock: nil), timeout: 1), let locks = answer.locks
        else { return [] }
        return locks.compactMap { $0["name"]?.string }.filter { $0.hasPrefix(prefix) }
    }
}
