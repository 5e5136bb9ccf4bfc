import Glibc
import SystemPackage

/// The file-system helpers lockd's parts share.
enum FileSystem {
    /// `mkdir -p`: creates `path` and its missing parents with `mode`; existing ones are fine.
    static func makeDirectories(_ path: String, mode: mode_t) throws(Errno) {
        var prefix = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            prefix += "/" + component
            guard mkdir(prefix, mode) == 0 || errno == EEXIST else { throw Errno(rawValue: errno) }
        }
    }

    /// The whole content of a file (at most `limit` bytes).
    static func contents(of path: String, limit: Int = 64 << 20) throws(Errno) -> [UInt8] {
        do {
            let fd = try FileDescriptor.open(path, .readOnly, options: [.closeOnExec])
            return try fd.closeAfter {
                var bytes: [UInt8] = []
                var chunk = [UInt8](repeating: 0, count: 16384)
                while bytes.count < limit {
                    let want = min(chunk.count, limit - bytes.count)
                    let count = try chunk.withUnsafeMutableBytes { try fd.read(into: .init(rebasing: $0.prefix(want))) }
                    if count == 0 { break }
                    bytes += chunk[..<count]
                }
                return bytes
            }
        } catch let error as Errno {
            throw error
        } catch {
            throw Errno.ioError
        }
    }
}
