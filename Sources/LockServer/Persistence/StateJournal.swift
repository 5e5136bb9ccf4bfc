import Glibc
import LockCore
import LockProtocol

/// lockd's state file: an append-only journal in the state directory, one record per line,
/// `JSON<TAB>CRC-32 in hex`. A record replaces what an earlier one said about the same lock.
///
/// Appends are buffered and written with one `fdatasync` per event-loop turn, before the
/// answers of that turn are flushed: nothing durable is acknowledged before it is on disk.
/// A crash can only tear the last line; replay stops at the first line whose checksum fails and
/// truncates the file there.
final class StateJournal {
    static let fileName = "lockd.journal"

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// What replay found.
    struct Contents {
        /// The last record for each lock, in file order of first appearance.
        var locks: [String: JSONValue] = [:]
        /// The highest fence reservation.
        var fence: UInt64 = 0
        var records = 0
        /// Bytes after the last whole record (a torn write), dropped.
        var droppedBytes = 0
        /// Whole records that say nothing lockd can use (e.g. a fence beyond the maximum).
        var unusableRecords = 0
    }

    let directory: String
    private var fd: Int32
    private let lockFD: Int32
    private var pending: [UInt8] = []
    /// The file's size, for deciding when to compact.
    private(set) var size = 0

    private var path: String { directory + "/" + Self.fileName }

    /// Opens (creating) the journal in `directory` and reads it. Only one lockd may use a
    /// directory: a second one is refused, since two writers would corrupt the journal.
    static func open(directory: String) throws(Failure) -> (StateJournal, Contents) {
        try makeDirectory(directory)
        let lockFD = Glibc.open(directory + "/lockd.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard lockFD >= 0 else { throw Failure(description: "cannot open \(directory)/lockd.lock: \(errnoText())") }
        guard flock(lockFD, LOCK_EX | LOCK_NB) == 0 else {
            close(lockFD)
            throw Failure(description: "another lockd uses the state directory \(directory)")
        }
        let path = directory + "/" + fileName
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Failure(description: "cannot open \(path): \(errnoText())") }
        let journal = StateJournal(directory: directory, fd: fd, lockFD: lockFD)
        let contents = try journal.replay()
        return (journal, contents)
    }

    private init(directory: String, fd: Int32, lockFD: Int32) {
        self.directory = directory
        self.fd = fd
        self.lockFD = lockFD
    }

    deinit {
        close(fd)
        close(lockFD)
    }

    /// Queues a record; ``sync()`` writes it.
    func append(_ record: JSONValue) {
        let start = pending.count
        record.write(to: &pending)
        let checksum = CRC32.checksum(pending[start...])
        pending.append(UInt8(ascii: "\t"))
        pending.append(contentsOf: Array(hex(checksum).utf8))
        pending.append(UInt8(ascii: "\n"))
    }

    var hasPending: Bool { !pending.isEmpty }

    /// Writes the queued records and waits until they are on disk.
    func sync() throws(Failure) {
        guard !pending.isEmpty else { return }
        try writeAll(fd, pending, what: path)
        guard fdatasync(fd) == 0 else { throw Failure(description: "fdatasync \(path): \(errnoText())") }
        size += pending.count
        pending.removeAll(keepingCapacity: true)
    }

    /// Replaces the journal with `records` (a snapshot): written to a new file, synced, renamed
    /// over the old one, and the directory synced, so a crash leaves one whole file or the other.
    func compact(to records: [JSONValue]) throws(Failure) {
        pending.removeAll()
        for record in records { append(record) }
        let temporary = path + ".new"
        let newFD = Glibc.open(temporary, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0o600)
        guard newFD >= 0 else { throw Failure(description: "cannot create \(temporary): \(errnoText())") }
        do throws(Failure) {
            try writeAll(newFD, pending, what: temporary)
            guard fsync(newFD) == 0 else { throw Failure(description: "fsync \(temporary): \(errnoText())") }
            guard rename(temporary, path) == 0 else {
                throw Failure(description: "rename \(temporary): \(errnoText())")
            }
            try syncDirectory()
        } catch {
            close(newFD)
            throw error
        }
        close(fd)
        fd = newFD
        size = pending.count
        pending.removeAll(keepingCapacity: true)
    }

    private func replay() throws(Failure) -> Contents {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(bytes.count)) }
            if count < 0, errno == EINTR { continue }
            guard count >= 0 else { throw Failure(description: "cannot read \(path): \(errnoText())") }
            if count == 0 { break }
            bytes += chunk[..<count]
        }
        var contents = Contents()
        let offset = Self.read(bytes[...], into: &contents)
        contents.droppedBytes = bytes.count - offset
        if contents.droppedBytes > 0 {
            guard ftruncate(fd, off_t(offset)) == 0, fdatasync(fd) == 0 else {
                throw Failure(description: "cannot cut the torn end of \(path): \(errnoText())")
            }
        }
        size = offset
        return contents
    }

    /// Reads whole records from `bytes`, as replay does, without touching any file: the records
    /// read, and how many bytes they took (the rest is a torn or damaged end).
    static func read(_ bytes: ArraySlice<UInt8>, into contents: inout Contents) -> Int {
        var offset = bytes.startIndex
        while let newline = bytes[offset...].firstIndex(of: UInt8(ascii: "\n")) {
            guard let record = decode(bytes[offset..<newline]) else { break }
            if let name = record["lock"]?.string {
                contents.locks[name] = record
            } else if case .int(let fence)? = record["fence"], fence > 0, fence <= LockTable.maximumFence {
                contents.fence = max(contents.fence, UInt64(fence))
            } else {
                contents.unusableRecords += 1
            }
            contents.records += 1
            offset = newline + 1
        }
        return offset - bytes.startIndex
    }

    /// One line without its newline, or `nil` when it is torn or corrupt.
    static func decode(_ line: ArraySlice<UInt8>) -> JSONValue? {
        guard let tab = line.lastIndex(of: UInt8(ascii: "\t")), line.endIndex - tab == 9 else { return nil }
        let body = line[..<tab]
        guard String(decoding: line[(tab + 1)...], as: UTF8.self) == hex(CRC32.checksum(body)) else { return nil }
        return try? JSONValue.parse(body)
    }

    private func syncDirectory() throws(Failure) {
        let directoryFD = Glibc.open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directoryFD >= 0 else { throw Failure(description: "cannot open \(directory): \(errnoText())") }
        defer { close(directoryFD) }
        guard fsync(directoryFD) == 0 else { throw Failure(description: "fsync \(directory): \(errnoText())") }
    }

    private func writeAll(_ fd: Int32, _ bytes: [UInt8], what: String) throws(Failure) {
        var written = 0
        while written < bytes.count {
            let count = bytes[written...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { throw Failure(description: "cannot write \(what): \(errnoText())") }
            written += count
        }
    }

    private static func makeDirectory(_ directory: String) throws(Failure) {
        var prefix = ""
        for component in directory.split(separator: "/") {
            prefix += "/" + component
            if mkdir(prefix, 0o700) != 0, errno != EEXIST {
                throw Failure(description: "cannot create \(prefix): \(errnoText())")
            }
        }
    }
}

private func hex(_ value: UInt32) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: 8 - digits.count) + digits
}

private func errnoText() -> String { String(cString: strerror(errno)) }

/// CRC-32 (IEEE 802.3, as zlib), to tell a whole record from a torn or damaged one.
enum CRC32 {
    private static let table: [UInt32] = (0..<256).map { index in
        var value = UInt32(index)
        for _ in 0..<8 { value = value & 1 == 1 ? 0xEDB8_8320 ^ (value >> 1) : value >> 1 }
        return value
    }

    static func checksum(_ bytes: some Sequence<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }
}
