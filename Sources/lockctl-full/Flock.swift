import ArgumentParser
import CLockSupport
import Glibc
import LockClient
import LockCore
import LockProtocol
import LockctlCore

/// `lockctl flock` (and the same binary called `lflock`): flock(1)'s command line on lockd's
/// locks: `flock [options] FILE|DIR command [args...]`, `flock [options] FILE|DIR -c command` and
/// the FD form, `flock [options] FD` after `exec 9>FILE` (`DescriptorLock`). docs/lockctl.md.
struct Flock: DaemonCommand {
    static let configuration = CommandConfiguration(
        commandName: "flock",
        abstract: "flock(1)'s command line on lockd's locks (also installed as lflock).",
        discussion: """
            A FILE or DIR names the lock "file:" + its absolute path with symbolic links resolved (bytes \
            outside A-Z a-z 0-9 . _ : / @ - written +XX in hex); lflock creates FILE if it is missing, as \
            flock does. In the FD form (lflock 9, after exec 9>FILE) the lock belongs to the open file \
            description, as with flock: it lasts until every process that inherited the descriptor has \
            closed it, or until lflock -u 9. Exit status: the command's, or 1 (--conflict-exit-code) when \
            the lock cannot be had.
            """)

    @Flag(name: [.customShort("s"), .long], help: "Get a shared lock.") var shared = false
    @Flag(name: [.customShort("x"), .customShort("e"), .long], help: "Get an exclusive lock (the default).")
    var exclusive = false
    @Flag(name: [.customShort("u"), .long], help: "Remove the lock of a descriptor (the FD form).") var unlock = false
    @Flag(name: [.customShort("n"), .customLong("nb"), .customLong("nonblock")], help: "Fail rather than wait.")
    var nonblock = false
    @Option(
        name: [.customShort("w"), .long, .customLong("timeout")], parsing: .unconditional,
        help: "Wait at most SECONDS.")
    var wait: String?
    @Option(name: [.customShort("E"), .long], help: "Exit code after a conflict or timeout (default 1).")
    var conflictExitCode: Int32 = 1
    @Flag(name: [.customShort("o"), .long], help: "Do not pass the lock to the command (it ends with lflock).")
    var close = false
    @Option(name: [.customShort("c"), .long], help: "Run a single command string through the shell.")
    var command: String?
    @Flag(name: [.customShort("F"), .long], help: "Execute the command without forking (it keeps the lock).")
    var noFork = false
    @Flag(help: "Say how long getting the lock took, and what runs.") var verbose = false
    @OptionGroup var global: GlobalOptions
    @ParentCommand var lockctl: LockCtl
    @Argument(help: "The file or directory that names the lock, or a descriptor open on one.") var file: String
    @Argument(parsing: .captureForPassthrough, help: "The command and its arguments.") var arguments: [String] = []

    /// One argument and no command: `flock FD`.
    private var descriptor: Int32? { command == nil && arguments.isEmpty ? Int32(file) : nil }

    func validate() throws {
        try validating {
            if command == nil, arguments.isEmpty, (descriptor ?? -1) < 0 {
                throw ValidationError("bad file descriptor: '\(file)' (give a descriptor, or a command after FILE)")
            }
            if unlock, descriptor == nil { throw ValidationError("-u removes the lock of a descriptor: lflock -u FD") }
            if command != nil, !arguments.isEmpty {
                throw ValidationError("use either -c COMMAND or a command, not both")
            }
            if arguments.first == "-c" || arguments.first == "--command", arguments.count != 2 {
                throw ValidationError("-c takes one command string")
            }
            if close, noFork { throw ValidationError("-o and -F do not go together") }
            if let wait { _ = try seconds(wait, option: "--wait") }
            guard (0...255).contains(conflictExitCode) else {
                throw invalidValue("--conflict-exit-code must be 0-255, not \(conflictExitCode)")
            }
        }
    }

    /// The command: `-c STRING` may also come after FILE, as flock(1) allows.
    private var argv: [String] {
        if let command { return ["/bin/sh", "-c", command] }
        if arguments.count == 2, ["-c", "--command"].contains(arguments[0]) { return ["/bin/sh", "-c", arguments[1]] }
        return arguments
    }

    func run() throws {
        if let descriptor { return try lock(descriptor) }
        let lock = try Self.lockName(for: file)
        let argv = self.argv
        let context = "flock \"\(file)\""
        let signals = TerminationSignals()
        let connection = try connect(context)
        let started = LockConnection.monotonicSeconds()
        let options = WaitSpec(
            mode: shared && !exclusive ? .shared : .exclusive,
            seconds: nonblock ? 0 : wait.flatMap { secondsValue($0) }.flatMap { $0.isInfinite ? nil : $0 },
            // flock(1) lets -E 0 through; so does lflock, for scripts that want it.
            conflictExitCode: conflictExitCode == 0 ? 1 : conflictExitCode)
        do {
            _ = try acquireInterruptibly(connection, name: lock, owner: .session, wait: options, signals: signals)
        } catch {
            throw conflictExitCode == 0 && error.rawValue == 1 ? ExitCode(0) : error
        }
        if verbose {
            sayHowLong(since: started)
            printFlock("executing \(argv[0])")
        }
        if noFork {
            // The command becomes this process and keeps the connection, and with it the lock.
            _ = fcntl(connection.fd, F_SETFD, 0)
            let cStrings = argv.map { strdup($0) } + [nil]
            _ = cStrings.withUnsafeBufferPointer { execvp(argv[0], $0.baseAddress!) }
            let code = errno
            printError("cannot run \(argv[0]): \(String(cString: strerror(code)))")
            throw ExitCode(code == ENOENT ? 127 : 126)
        }
        if !close { lockd_become_subreaper() }
        var child = ChildProcess(
            arguments: argv, shielded: false, inherited: close ? nil : connection, diesWithLockctl: false,
            onLost: .warn)
        let end = try child.run(signals: signals, connection: connection, lockName: lock.rawValue)
        if close || lockd_has_children() == 0 {
            _ = try? connection.call(.release(lock: lock, owner: .session, all: true), timeout: 5)
        }
        end.finish()
    }

    private func sayHowLong(since started: Double) {
        guard verbose else { return }
        let micros = Int((LockConnection.monotonicSeconds() - started) * 1e6)
        let fraction = String(micros % 1_000_000)
        printFlock(
            "getting lock took \(micros / 1_000_000).\(String(repeating: "0", count: 6 - fraction.count))\(fraction) seconds"
        )
    }

    /// The FD form: the hold belongs to the descriptor's open file description, and a keeper
    /// process owns it in lockd for as long as that lives (`DescriptorLock`).
    private func lock(_ descriptor: Int32) throws(ExitCode) {
        let description = try DescriptorLock(descriptor: descriptor)
        defer { Glibc.close(description.probe) }
        let holds = description.holds()
        if unlock { return holds.forEach(description.end) }
        let mode: LockMode = shared && !exclusive ? .shared : .exclusive
        let lock = try DescriptorLock.lockName(of: descriptor)
        let started = LockConnection.monotonicSeconds()
        for hold in holds {
            // flock(2) on a description that holds the lock in that mode already changes nothing.
            if let keeper = hold.keeper, keeper.mode == mode, isHeld(lock, by: keeper.pid, mode) {
                return sayHowLong(since: started)
            }
            // A change of mode is a release and a new acquire, as flock(2)'s own conversion is.
            description.end(hold)
        }
        let marker = try description.placeMarker()
        var keeper = ["lockctl", "flock-keeper", "--descriptor", "\(descriptor)", "--marker", "\(marker)"]
        if mode == .shared { keeper.append("--shared") }
        if nonblock { keeper += ["--wait", "0"] } else if let wait { keeper += ["--wait", wait] }
        keeper += ["--conflict-exit-code", "\(conflictExitCode == 0 ? 1 : conflictExitCode)"]
        if let socket = global.socket ?? lockctl.global.socket { keeper += ["--socket", socket] }
        if let timeout = global.daemonTimeout ?? lockctl.global.daemonTimeout {
            keeper += ["--daemon-timeout", timeout]
        }
        let end = try Self.startKeeper(keeper)
        guard case .exited(0) = end else {
            _ = lockd_range_set(descriptor, 1, Int32(LOCKD_RANGE_UNLOCK), marker)
            if case .exited(1) = end, conflictExitCode == 0 { return }
            end.finish()
        }
        sayHowLong(since: started)
    }

    /// Whether lockd lists `pid` among the lock's holders in that mode (a break may have ended
    /// the hold while its keeper lives on).
    private func isHeld(_ lock: LockName, by pid: Int32, _ mode: LockMode) -> Bool {
        guard let connection = try? connect("flock"), let answer = try? connection.call(.status(lock: lock)) else {
            return false
        }
        let holders = answer.locks?.first?["holders"]?.elements ?? []
        return holders.contains { $0["pid"] == .int(Int64(pid)) && $0["mode"]?.string == mode.rawValue }
    }

    /// Starts the keeper and waits until it holds the lock (`.exited(0)`) or has ended, with the
    /// way it ended.
    private static func startKeeper(_ arguments: [String]) throws(ExitCode) -> CommandEnd {
        var report: [Int32] = [-1, -1]
        guard pipe(&report) == 0, fcntl(report[0], F_SETFD, FD_CLOEXEC) == 0, fcntl(report[1], F_SETFD, FD_CLOEXEC) == 0
        else {
            printFlock("cannot make a pipe: \(String(cString: strerror(errno)))")
            throw ExitCode(Exit.software)
        }
        let argv = arguments + ["--report", "\(report[1])"]
        let cStrings = argv.map { strdup($0) } + [nil]
        defer { cStrings.forEach { free($0) } }
        // Ctrl-C while it waits ends lflock, and the keeper with it.
        let options = lockd_spawn_options(ignore_termination: 0, inherit_fd: report[1], parent_death_signal: SIGKILL)
        let pid = cStrings.withUnsafeBufferPointer { lockd_spawn("/proc/self/exe", $0.baseAddress, options) }
        Glibc.close(report[1])
        defer { Glibc.close(report[0]) }
        guard pid > 0 else {
            printFlock("cannot start its keeper: \(String(cString: strerror(errno)))")
            throw ExitCode(Exit.software)
        }
        var byte: UInt8 = 0
        var count: Int
        repeat { count = read(report[0], &byte, 1) } while count < 0 && errno == EINTR
        if count == 1 { return .exited(0) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        // WIFEXITED / WTERMSIG, which Swift does not import.
        return status & 0x7f == 0 ? .exited((status >> 8) & 0xff) : .signaled(status & 0x7f)
    }

    /// `file:` and the absolute path with symbolic links resolved (so that every path to a file,
    /// and the FD form, name one lock), with bytes a lock name cannot hold written `+XX`.
    static func lockName(for path: String) throws(ExitCode) -> LockName {
        // flock(1) opens (and creates) the file; so does lflock, so that scripts find what they expect.
        let fd = open(path, O_RDONLY | O_CREAT | O_NOCTTY | O_CLOEXEC, 0o666)
        if fd < 0, errno != EISDIR {
            let code = errno
            if open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) < 0 {
                throw invalidValue("flock: cannot open \(path): \(String(cString: strerror(code)))")
            }
        }
        if fd >= 0 { Glibc.close(fd) }
        guard let resolved = realpath(path, nil) else {
            throw invalidValue("flock: cannot resolve \(path): \(String(cString: strerror(errno)))")
        }
        defer { free(resolved) }
        return try lockName(absolute: String(cString: resolved))
    }

    /// `file:` and an absolute path, with bytes a lock name cannot hold written `+XX`.
    static func lockName(absolute: String) throws(ExitCode) -> LockName {
        let allowed = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:/@-".utf8)
        var name = "file:"
        for byte in absolute.utf8 {
            if allowed.contains(byte) {
                name.append(Character(UnicodeScalar(byte)))
            } else {
                let hex = String(byte, radix: 16, uppercase: true)
                name += "+" + (hex.count < 2 ? "0" + hex : hex)
            }
        }
        guard let lock = LockName(name) else {
            throw invalidValue("flock: the path \(absolute) makes a lock name over 255 bytes")
        }
        return lock
    }
}

/// flock(1)'s own messages go out as `flock: ...`, so scripts that grep them keep working.
func printFlock(_ message: String) {
    let bytes = Array("flock: \(message)\n".utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}
