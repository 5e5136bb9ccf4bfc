import Glibc
import LockCore
import LockProtocol
import SystemPackage

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
    private var fd: FileDescriptor
    private let lockFD: FileDescriptor
    private var pending: [UInt8] = []
    /// The file's size, for deciding when to compact.
    private(set) var size = 0

    private var path: String { directory + "/" + Self.fileName }

    /// Opens (creating) the journal in `directory` and reads it. Only one lockd may use a
    /// directory: a second one is refused, since two writers would corrupt the journal.
    static func open(directory: String) throws(Failure) -> (StateJournal, Contents) {
        do {
            try FileSystem.makeDirectories(directory, mode: 0o700)
        } catch {
            throw Failure(description: "cannot create \(directory): \(error)")
        }
        let lockFD = try Failure.io("open \(directory)/lockd.lock") {
            try FileDescriptor.open(
                directory + "/lockd.lock", .readWrite, options: [.create, .closeOnExec], permissions: [.ownerReadWrite])
        }
        guard flock(lockFD.rawValue, LOCK_EX | LOCK_NB) == 0 else {
            try? lockFD.close()
            throw Failure(description: "another lockd uses the state directory \(directory)")
        }
        let path = directory + "/" + fileName
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(
                path, .readWrite, options: [.create, .append, .closeOnExec], permissions: [.ownerReadWrite])
        } catch {
            try? lockFD.close()
            throw Failure(description: "cannot open \(path): \(error)")
        }
        let journal = StateJournal(directory: directory, fd: fd, lockFD: lockFD)
        let contents = try journal.replay()
        return (journal, contents)
    }

    private init(directory: String, fd: FileDescriptor, lockFD: FileDescriptor) {
        self.directory = directory
        self.fd = fd
        self.lockFD = lockFD
    }

    deinit {
        try? fd.close()
        try? lockFD.close()
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
        let (fd, pending) = (self.fd, self.pending)
        _ = try Failure.io("write \(path)") { try fd.writeAll(pending) }
        try Failure.check(fdatasync(fd.rawValue), "fdatasync \(path)")
        size += pending.count
        self.pending.removeAll(keepingCapacity: true)
    }

    /// Replaces the journal with `records` (a snapshot): written to a new file, synced, renamed
    /// over the old one, and the directory synced, so a crash leaves one whole file or the other.
    func compact(to records: [JSONValue]) throws(Failure) {
        pending.removeAll()
        for record in records { append(record) }
        let temporary = path + ".new"
        let newFD = try Failure.io("create \(temporary)") {
            try FileDescriptor.open(
                temporary, .readWrite, options: [.create, .truncate, .append, .closeOnExec],
                permissions: [.ownerReadWrite])
        }
        do throws(Failure) {
            let pending = self.pending
            _ = try Failure.io("write \(temporary)") { try newFD.writeAll(pending) }
            try Failure.check(fsync(newFD.rawValue), "fsync \(temporary)")
            try Failure.check(rename(temporary, path), "rename \(temporary)")
            try syncDirectory()
        } catch {
            try? newFD.close()
            throw error
        }
        try? fd.close()
        fd = newFD
        size = pending.count
        pending.removeAll(keepingCapacity: true)
    }

    private func replay() throws(Failure) -> Contents {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        let fd = self.fd
        while true {
            let offset = Int64(bytes.count)
            let count = try Failure.io("read \(path)") {
                try chunk.withUnsafeMutableBytes { try fd.read(fromAbsoluteOffset: offset, into: $0) }
            }
            if count == 0 { break }
            bytes += chunk[..<count]
        }
        var contents = Contents()
        let offset = Self.read(bytes[...], into: &contents)
        contents.droppedBytes = bytes.count - offset
        if contents.droppedBytes > 0 {
            _ = try Failure.io("cut the torn end of \(path)") { try fd.resize(to: Int64(offset)) }
            try Failure.check(fdatasync(fd.rawValue), "fdatasync \(path)")
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
        let directory = self.directory
        let directoryFD = try Failure.io("open \(directory)") {
            try FileDescriptor.open(directory, .readOnly, options: [.directory, .closeOnExec])
        }
        defer { try? directoryFD.close() }
        try Failure.check(fsync(directoryFD.rawValue), "fsync \(directory)")
    }
}

extension StateJournal.Failure {
    /// Runs a swift-system call, naming what failed and why (its `Errno`).
    static func io<Result>(_ what: String, _ body: () throws -> Result) throws(Self) -> Result {
        do {
            return try body()
        } catch {
            throw Self(description: "cannot \(what): \(error)")
        }
    }

    /// Checks the result of a libc call that sets errno.
    static func check(_ result: Int32, _ what: String) throws(Self) {
        guard result == 0 else { throw Self(description: "cannot \(what): \(Errno(rawValue: errno))") }
    }
}

private func hex(_ value: UInt32) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: 8 - digits.count) + digits
}

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
