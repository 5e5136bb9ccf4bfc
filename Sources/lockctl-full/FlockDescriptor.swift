import ArgumentParser
import CLockSupport
import Glibc
import LockClient
import LockCore
import LockProtocol
import LockctlCore

/// flock(1)'s FD form (`exec 9>FILE; lflock 9`), where the lock belongs to the open file
/// description behind the descriptor: every process that inherited it shares the hold, and the
/// hold ends when the last of them closes it (or at `lflock -u 9`).
///
/// lockd cannot see a description, so a small keeper process (`lockctl flock-keeper`) owns the
/// hold (a pid owner) and lives exactly as long as the description. The description carries a
/// marker, an open-file-description lock on one byte far beyond any data (`Marker`), which the
/// kernel drops when the description's last descriptor closes; the keeper sees every final close
/// of the file through inotify, checks whether the marker is still there, and exits when it is
/// not. The keeper holds a process lock right after the marker, whose owner pid any process can
/// read back: that is how `lflock -u 9` finds the keeper of its description. docs/lockctl.md.
struct DescriptorLock {
    let descriptor: Int32
    /// Another open file description of the same file: byte-range queries through it see the
    /// locks of `descriptor`'s description, which queries through `descriptor` itself do not.
    let probe: Int32

    /// Where markers and keeper locks live in every locked file.
    enum Marker {
        /// 2^62: no file holds data there, so no program that locks ranges of its data meets them.
        static let base: Int = 1 << 62
        /// Markers sit at `base + 4 * r` for a random r; a keeper's lock follows its marker, one
        /// byte later for an exclusive hold, two for a shared one.
        static func keeper(of marker: Int, _ mode: LockMode) -> Int { marker + (mode == .exclusive ? 1 : 2) }
    }

    /// The hold of this description, as its marker and keeper show it.
    struct Hold {
        var marker: Int
        /// The keeper's pid and the hold's mode; nil when the keeper is gone (killed) and only the
        /// marker is left.
        var keeper: (pid: Int32, mode: LockMode)?
    }

    init(descriptor: Int32) throws(ExitCode) {
        guard fcntl(descriptor, F_GETFL) >= 0 else {
            printFlock("\(descriptor): Bad file descriptor")
            throw ExitCode(Exit.invalid)
        }
        self.descriptor = descriptor
        probe = try Self.openAgain(descriptor)
    }

    /// A new description of the file behind `descriptor` (reading if allowed: the keeper needs it
    /// for inotify), through /proc, so that a file reached by a path that is gone still opens.
    static func openAgain(_ descriptor: Int32) throws(ExitCode) -> Int32 {
        for access in [O_RDONLY, O_WRONLY] {
            let fd = open("/proc/self/fd/\(descriptor)", access | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
            if fd >= 0 { return fd }
        }
        printFlock(
            "\(descriptor): cannot open its file once more to keep the lock: \(String(cString: strerror(errno)))")
        throw ExitCode(Exit.invalid)
    }

    /// The lock name: the same as `lflock PATH` gives for the file's path, so both forms exclude
    /// each other.
    static func lockName(of descriptor: Int32) throws(ExitCode) -> LockName {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/fd/\(descriptor)", &buffer, Int(PATH_MAX))
        let target = count > 0 ? String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
        guard target.hasPrefix("/") else {
            printFlock(
                "\(descriptor): lflock locks files and directories, and this is \(target.isEmpty ? "?" : target)")
            throw ExitCode(Exit.invalid)
        }
        return try Flock.lockName(absolute: target)
    }

    /// This description's holds (one, unless a keeper was killed and a marker left behind).
    func holds() -> [Hold] {
        let locks = Self.locks(through: probe, from: Marker.base)
        var holds: [Hold] = []
        for lock in locks where lock.pid == -1 && lock.length == 1 && (lock.start - Marker.base) % 4 == 0 {
            // A marker of this description is invisible through the descriptor itself.
            var other = lockd_range()
            guard lockd_range_test(descriptor, lock.start, 1, &other) == 0 else { continue }
            var hold = Hold(marker: lock.start)
            for mode in [LockMode.exclusive, .shared] {
                if let keeper = locks.first(where: { $0.start == Marker.keeper(of: lock.start, mode) && $0.pid > 0 }) {
                    hold.keeper = (keeper.pid, mode)
                }
            }
            holds.append(hold)
        }
        return holds
    }

    /// Every lock from `start` to the end of the file held by other descriptions or processes.
    /// A query returns one lock; the rest of the range is searched on either side of it.
    static func locks(through fd: Int32, from start: Int) -> [lockd_range] {
        var found: [lockd_range] = []
        var ranges = [(start, Int.max)]
        while let (low, high) = ranges.popLast(), found.count < 4096 {
            var lock = lockd_range()
            guard lockd_range_test(fd, (low), high == .max ? 0 : high - low + 1, &lock) == 1 else { continue }
            found.append(lock)
            let end = lock.length == 0 ? Int.max : Int(lock.start) + Int(lock.length) - 1
            if lock.start > low { ranges.append((low, Int(lock.start) - 1)) }
            if end < high { ranges.append((end + 1, high)) }
        }
        return found
    }

    /// Ends a hold of this description: stops its keeper (lockd frees the hold when the keeper's
    /// process is gone, before it answers anyone about the lock) and removes the marker.
    func end(_ hold: Hold) {
        if let keeper = hold.keeper {
            let pidfd = lockd_pidfd_open(keeper.pid)
            var lock = lockd_range()
            // Still that keeper (not a new process under a reused pid)?
            if pidfd >= 0, lockd_range_test(probe, Marker.keeper(of: hold.marker, keeper.mode), 1, &lock) == 1,
                lock.pid == keeper.pid
            {
                _ = lockd_pidfd_signal(pidfd, SIGTERM)
                var waiting = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
                _ = poll(&waiting, 1, 10_000)
            }
            if pidfd >= 0 { close(pidfd) }
        }
        _ = lockd_range_set(descriptor, 1, Int32(LOCKD_RANGE_UNLOCK), (hold.marker))
    }

    /// Puts a new marker on the description: a shared lock when it was opened for reading only
    /// (an exclusive one needs write access), else an exclusive one.
    func placeMarker() throws(ExitCode) -> Int {
        let access = fcntl(descriptor, F_GETFL) & O_ACCMODE
        let kind = access == O_RDONLY ? LOCKD_RANGE_READ : LOCKD_RANGE_WRITE
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<8 {
            let marker = Marker.base + 4 * Int.random(in: 0..<(1 << 58), using: &generator)
            if lockd_range_set(descriptor, 1, Int32(kind), (marker)) == 0 { return marker }
            guard errno == EAGAIN || errno == EACCES else { break }
        }
        printFlock("\(descriptor): cannot mark its open file description: \(String(cString: strerror(errno)))")
        throw ExitCode(Exit.software)
    }
}
