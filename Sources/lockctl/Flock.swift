import ArgumentParser
import CLockSupport
import Glibc
import LockClient
import LockCore
import LockProtocol

/// `lockctl flock` (and the same binary called `lflock`): flock(1)'s command line on lockd's
/// locks. `flock [options] FILE|DIR command [args...]` and `flock [options] FILE|DIR -c command`;
/// the FD form (`flock 9` after `exec 9>file`) is not supported yet (docs/lockctl.md).
struct Flock: DaemonCommand {
    static let configuration = CommandConfiguration(
        commandName: "flock",
        abstract: "flock(1)'s command line on lockd's locks (also installed as lflock).",
        discussion: """
            A FILE or DIR names the lock "file:" + its absolute path (bytes outside A-Z a-z 0-9 . _ : / @ - \
            written +XX in hex); lflock creates FILE if it is missing, as flock does. Exit status: the \
            command's, or 1 (--conflict-exit-code) when the lock cannot be had.
            """)

    @Flag(name: [.customShort("s"), .long], help: "Get a shared lock.") var shared = false
    @Flag(name: [.customShort("x"), .customShort("e"), .long], help: "Get an exclusive lock (the default).")
    var exclusive = false
    @Flag(name: [.customShort("u"), .long], help: "Remove a lock (the FD form; not supported yet).") var unlock = false
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
    @Argument(help: "The file or directory that names the lock.") var file: String
    @Argument(parsing: .captureForPassthrough, help: "The command and its arguments.") var arguments: [String] = []

    func validate() throws {
        if unlock { throw ValidationError("-u works on a descriptor (flock FD), which lflock does not support yet") }
        if command == nil, arguments.isEmpty {
            throw ValidationError("give a command after FILE, or -c COMMAND (the FD form is not supported yet)")
        }
        if command != nil, !arguments.isEmpty { throw ValidationError("use either -c COMMAND or a command, not both") }
        if arguments.first == "-c" || arguments.first == "--command", arguments.count != 2 {
            throw ValidationError("-c takes one command string")
        }
        if close, noFork { throw ValidationError("-o and -F do not go together") }
        if let wait { _ = try seconds(wait, option: "--wait") }
        guard (0...255).contains(conflictExitCode) else {
            throw invalidValue("--conflict-exit-code must be 0-255, not \(conflictExitCode)")
        }
    }

    /// The command: `-c STRING` may also come after FILE, as flock(1) allows.
    private var argv: [String] {
        if let command { return ["/bin/sh", "-c", command] }
        if arguments.count == 2, ["-c", "--command"].contains(arguments[0]) { return ["/bin/sh", "-c", arguments[1]] }
        return arguments
    }

    func run() throws {
        let lock = try Self.lockName(for: file)
        let argv = self.argv
        let context = "flock \"\(file)\""
        let signals = TerminationSignals()
        let connection = try connect(context)
        let started = LockConnection.monotonicSeconds()
        var options = WaitOptions()
        options.shared = shared && !exclusive
        options.noWait = nonblock
        options.wait = nonblock ? nil : wait
        // flock(1) lets -E 0 through; so does lflock, for scripts that want it.
        options.conflictExitCode = conflictExitCode == 0 ? 1 : conflictExitCode
        do {
            _ = try acquireInterruptibly(connection, name: lock, owner: .session, wait: options, signals: signals)
        } catch {
            throw conflictExitCode == 0 && error.rawValue == 1 ? ExitCode(0) : error
        }
        if verbose {
            let micros = Int((LockConnection.monotonicSeconds() - started) * 1e6)
            let fraction = String(micros % 1_000_000)
            printFlock(
                "getting lock took \(micros / 1_000_000).\(String(repeating: "0", count: 6 - fraction.count))\(fraction) seconds"
            )
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

    /// `file:` and the absolute path, with bytes a lock name cannot hold written `+XX`.
    static func lockName(for path: String) throws(ExitCode) -> LockName {
        var absolute = path
        if !path.hasPrefix("/") {
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX))
            guard getcwd(&buffer, buffer.count) != nil else {
                throw invalidValue("flock: cannot read the working directory")
            }
            absolute = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) } + "/" + path
        }
        // flock(1) opens (and creates) the file; so does lflock, so that scripts find what they expect.
        let fd = open(path, O_RDONLY | O_CREAT | O_NOCTTY | O_CLOEXEC, 0o666)
        if fd < 0, errno != EISDIR {
            let code = errno
            if open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) < 0 {
                throw invalidValue("flock: cannot open \(path): \(String(cString: strerror(code)))")
            }
        }
        if fd >= 0 { Glibc.close(fd) }
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
            throw invalidValue("flock: the path \(path) makes a lock name over 255 bytes")
        }
        return lock
    }
}

/// flock(1)'s own messages go out as `flock: ...`, so scripts that grep them keep working.
private func printFlock(_ message: String) {
    let bytes = Array("flock: \(message)\n".utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}
