import Glibc
import LockClient
import LockProtocol
import SystemPackage

/// Makes the socket path ready to bind, or explains in one line why lockd must not start there.
enum SocketPreparation {
    struct Refusal: Error, CustomStringConvertible {
        var description: String
    }

    /// Creates missing parent directories (0755 for root, 0700 otherwise) and removes a stale
    /// socket file; refuses when the path is not a socket or something answers on it.
    /// - Returns: whether a stale socket file was removed.
    static func prepare(path: String) throws(Refusal) -> Bool {
        // Said before anything is created: NIO would only say `unixDomainSocketPathTooLong`.
        let limit = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1
        guard path.utf8.count <= limit else {
            throw Refusal(description: "socket path is too long: \(path.utf8.count) bytes, at most \(limit)")
        }
        try makeDirectories(for: path)
        var info = stat()
        guard lstat(path, &info) == 0 else { return false }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw Refusal(description: "\(path) exists and is not a socket")
        }
        let connection: LockConnection
        do {
            connection = try LockConnection(path: path)
        } catch {
            guard error.kind == .unreachable else { throw Refusal(description: error.message) }
            guard unlink(path) == 0 || errno == ENOENT else {
                throw Refusal(description: "cannot remove stale socket \(path): \(Errno(rawValue: errno))")
            }
            return true
        }
        if let answer = try? connection.call(.hello, timeout: 1),
            answer.fields["server"]?.string?.hasPrefix("lockd") == true
        {
            throw Refusal(description: "another lockd is already serving \(path)")
        }
        throw Refusal(description: "something else is listening on \(path)")
    }

    private static func makeDirectories(for path: String) throws(Refusal) {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return }
        let directory = String(path[..<slash])
        do {
            try FileSystem.makeDirectories(directory, mode: geteuid() == 0 ? 0o755 : 0o700)
        } catch {
            throw Refusal(description: "cannot create \(directory): \(error)")
        }
    }
}
