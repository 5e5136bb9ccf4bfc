import Foundation
import LockClient
import LockProtocol
import Testing

/// The built binaries sit next to the test executable.
enum Binaries {
    static let directory: String = {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        var url = URL(fileURLWithPath: exe).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent("lockd").path), url.path != "/" {
            url.deleteLastPathComponent()
        }
        return url.path
    }()
    static var lockd: String { directory + "/lockd" }
    static var lockctl: String { directory + "/lockctl" }
}

struct Output {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs a program to its end (bounded) and collects its output.
@discardableResult
func execute(_ path: String, _ arguments: [String], environment: [String: String] = [:], timeout: Double = 20)
    throws -> Output
{
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    // Files, not pipes: a grandchild that keeps them open (a crash reporter, a daemon) cannot
    // make the test wait for an end of file that never comes.
    let base = FileManager.default.temporaryDirectory.appendingPathComponent("lockd-out-\(UUID().uuidString)").path
    _ = FileManager.default.createFile(atPath: base + ".out", contents: nil)
    _ = FileManager.default.createFile(atPath: base + ".err", contents: nil)
    defer {
        try? FileManager.default.removeItem(atPath: base + ".out")
        try? FileManager.default.removeItem(atPath: base + ".err")
    }
    process.standardOutput = FileHandle(forWritingAtPath: base + ".out")
    process.standardError = FileHandle(forWritingAtPath: base + ".err")
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning, Date() < deadline { usleep(2000) }
    if process.isRunning {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        Issue.record("\(path) \(arguments) did not finish within \(timeout)s")
    }
    process.waitUntilExit()
    let stdout = (try? String(contentsOfFile: base + ".out", encoding: .utf8)) ?? ""
    let stderr = (try? String(contentsOfFile: base + ".err", encoding: .utf8)) ?? ""
    return Output(status: process.terminationStatus, stdout: stdout, stderr: stderr)
}

/// Waits (bounded) until `condition` holds.
func eventually(timeout: Double = 5, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        usleep(10_000)
    }
    return try condition()
}

/// A real lockd on a socket in a temporary directory; stopped (and the directory removed) at deinit.
final class Daemon {
    let directory: String
    let socket: String
    private(set) var process: ChildProcess
    private let command: [String]
    private let environment: [String: String]
    let logPath: String
    let configPath: String
    let stateDirectory: String

    /// Starts lockd with `arguments` and the configuration text `config` (written to
    /// `configPath`). `launcher` runs lockd through another program (e.g. systemd-socket-activate),
    /// and then `arguments` and `environment` are the launcher's business.
    init(
        arguments: [String] = [], socketName: String = "lockd.sock", config: String = "[log]\nlevel = \"debug\"\n",
        environment: [String: String] = [:],
        launcher: ((_ socket: String, _ lockdArguments: [String]) -> [String])? = nil,
        waitForSocket: Bool = true
    ) throws {
        directory =
            FileManager.default.temporaryDirectory
            .appendingPathComponent("lockd-test-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        socket = directory + "/" + socketName
        logPath = directory + "/lockd.log"
        configPath = directory + "/lockd.toml"
        stateDirectory = directory + "/state"
        // Every daemon keeps its state apart (root's default, /var/lib/lockd, is shared).
        let withState = config.contains("[state]") ? config : config + "\n[state]\ndirectory = \"\(stateDirectory)\"\n"
        try withState.write(toFile: configPath, atomically: true, encoding: .utf8)
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let lockdArguments = ["--config", configPath] + arguments
        let command =
            launcher?(socket, [Binaries.lockd] + lockdArguments)
            ?? [Binaries.lockd, "--socket", socket] + lockdArguments
        self.command = command
        self.environment = environment
        process = try ChildProcess(command, environment: environment, output: logPath)
        guard waitForSocket else { return }
        let up = eventually { (try? LockConnection(path: socket)) != nil }
        if !up { Issue.record("lockd did not start: \(log)") }
    }

    /// Starts lockd again with the same command (after a kill or a stop) and waits until it serves.
    func restart() throws {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        process = try ChildProcess(command, environment: environment, output: logPath)
        if !eventually({ (try? LockConnection(path: socket).ask("ping").isOK) == true }) {
            Issue.record("lockd did not come back: \(log)")
        }
    }

    /// SIGKILL, as a crash: no chance to write anything.
    func crash() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    func connect() throws -> LockConnection { try LockConnection(path: socket) }

    /// Runs lockctl against this daemon.
    @discardableResult
    func lockctl(_ arguments: String..., timeout: Double = 20) throws -> Output {
        try execute(Binaries.lockctl, arguments, environment: ["LOCKD_SOCKET": socket], timeout: timeout)
    }

    /// Runs a bash script with `$L` set to lockctl and LOCKD_SOCKET set.
    @discardableResult
    func shell(_ script: String, timeout: Double = 20) throws -> Output {
        try execute(
            "/bin/bash", ["-c", script], environment: ["LOCKD_SOCKET": socket, "L": Binaries.lockctl],
            timeout: timeout)
    }

    /// Sends a signal and waits (bounded) for the exit status.
    func stop(signal: Int32 = SIGTERM, timeout: Double = 10) -> Int32? {
        kill(process.processIdentifier, signal)
        guard eventually(timeout: timeout, { !process.isRunning }) else { return nil }
        return process.terminationStatus
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        // A sanitizer report in lockd ends lockd; its log is the only place that says why.
        let log = self.log
        if log.contains("ThreadSanitizer") || log.contains("Fatal error") || log.contains("Program crashed") {
            // A sanitizer report's first lines (both accesses and their stacks) say the most; a
            // crash's last lines do.
            let excerpt =
                log.range(of: "WARNING: ThreadSanitizer").map { log[$0.lowerBound...].prefix(12000) }
                ?? log.suffix(6000)
            Issue.record("lockd reported a problem (\(directory)):\n\(excerpt)")
        }
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// Starts a background process (bounded by the test), e.g. lockctl run, and returns it.
func spawn(_ path: String, _ arguments: [String], environment: [String: String] = [:]) throws -> (Process, Pipe) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let out = Pipe()
    process.standardOutput = out
    process.standardError = FileHandle.nullDevice
    process.standardInput = FileHandle.nullDevice
    try process.run()
    return (process, out)
}

/// The signal that ended `process`, or `nil` when it exited (a shell sees the difference: a
/// script stops on Ctrl-C only when its command died *by* SIGINT).
func diedBy(_ process: Process) -> Int32? {
    guard !process.isRunning, process.terminationReason == .uncaughtSignal else { return nil }
    return process.terminationStatus
}

func waitExit(_ process: some RunningProcess, timeout: Double = 10) -> Int32? {
    guard eventually(timeout: timeout, { !process.isRunning }) else {
        kill(process.processIdentifier, SIGKILL)
        return nil
    }
    return process.terminationStatus
}

extension LockConnection {
    /// Sends a request built by hand (tests also send what no typed request can say); returns its id.
    @discardableResult
    func send(op: String, _ fields: [(key: String, value: JSONValue)] = []) throws -> RequestID {
        let id = nextRequestID()
        try send(.object([("id", id.json), ("op", .string(op))] + fields))
        return id
    }

    /// Sends a request built by hand and returns the answer line.
    func call(op: String, _ fields: [(key: String, value: JSONValue)] = [], timeout: Double = 5) throws -> JSONValue {
        try response(to: send(op: op, fields), timeout: timeout)
    }

    /// Sends a request and returns the answer, failing the test on a transport error.
    func ask(_ op: String, _ fields: [(key: String, value: JSONValue)] = []) throws -> JSONValue {
        try call(op: op, fields, timeout: 5)
    }

    func acquire(_ lock: String, _ extra: [(key: String, value: JSONValue)] = []) throws -> JSONValue {
        try ask("acquire", [("lock", .string(lock))] + extra)
    }

    func holders(_ lock: String) throws -> [JSONValue] {
        let answer = try ask("status", [("lock", .string(lock))])
        guard case .array(let locks)? = answer["locks"], let first = locks.first,
            case .array(let holders)? = first["holders"]
        else { return [] }
        return holders
    }

    /// Reads the next pushed or answered message (bounded).
    func next(timeout: Double = 5) throws -> JSONValue? {
        if !backlog.isEmpty { return takeRawBacklog() }
        return try readJSON(timeout: timeout)
    }
}

extension JSONValue {
    var code: String? { self["error"]?["code"]?.string }
    var isOK: Bool { self["ok"]?.bool == true }
    var intValue: Int64? { if case .int(let value) = self { value } else { nil } }
}

/// A Unix datagram socket a test binds in place of systemd's notify socket or the journal's.
/// `@unchecked Sendable`: the background reader shares only `fd` (immutable) and the queue, which
/// `drained` guards.
final class DatagramListener: @unchecked Sendable {
    let path: String
    private let fd: Int32

    init(path: String) throws {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        let bound = UnixSocketAddress.with(path: path) { bind(fd, $0, $1) }
        guard bound == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        chmod(path, 0o666)
    }

    deinit {
        close(fd)
        unlink(path)
    }

    /// Datagrams a background reader took off the socket (see ``drainInBackground()``).
    private let drained = NSCondition()
    private var queued: [[UInt8]] = []
    private var draining = false

    /// Reads datagrams as they come, as journald does: a listener that only reads when the
    /// test looks would fill the socket's queue (net.unix.max_dgram_qlen, 10 here) and block the
    /// sender.
    func drainInBackground() {
        draining = true
        let thread = Thread { [weak self] in
            while let self {
                var poller = pollfd(fd: self.fd, events: Int16(POLLIN), revents: 0)
                guard poll(&poller, 1, 100) >= 0 else { return }
                guard poller.revents & Int16(POLLIN) != 0 else { continue }
                var buffer = [UInt8](repeating: 0, count: 65536)
                let count = buffer.withUnsafeMutableBytes { recv(self.fd, $0.baseAddress, $0.count, 0) }
                guard count >= 0 else { return }
                self.drained.lock()
                self.queued.append(Array(buffer[..<count]))
                self.drained.signal()
                self.drained.unlock()
            }
        }
        thread.start()
    }

    /// The next datagram, or nil when none arrives within `timeout` seconds.
    func receive(timeout: Double) -> [UInt8]? {
        if draining {
            drained.lock()
            defer { drained.unlock() }
            let deadline = Date().addingTimeInterval(timeout)
            while queued.isEmpty, drained.wait(until: deadline) {}
            return queued.isEmpty ? nil : queued.removeFirst()
        }
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, Int32(timeout * 1000)) == 1 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 65536)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        return count >= 0 ? Array(buffer[..<count]) : nil
    }

    /// Datagrams as `KEY=value` maps, with the time each arrived, until `until` says stop or
    /// `timeout` seconds pass.
    func collect(timeout: Double, until: ([(Date, [String: String])]) -> Bool) -> [(Date, [String: String])] {
        var received: [(Date, [String: String])] = []
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline, !until(received) {
            guard let datagram = receive(timeout: max(0.01, deadline.timeIntervalSinceNow)) else { break }
            received.append((Date(), Self.fields(datagram)))
        }
        return received
    }

    /// Parses newline-separated `KEY=value` lines and the journal's binary form for values with
    /// newlines (`KEY\n`, a little-endian 64-bit length, the value, `\n`).
    static func fields(_ datagram: [UInt8]) -> [String: String] {
        var fields: [String: String] = [:]
        var index = 0
        while index < datagram.count {
            let end = datagram[index...].firstIndex(of: UInt8(ascii: "\n")) ?? datagram.count
            let line = datagram[index..<end]
            if let equals = line.firstIndex(of: UInt8(ascii: "=")) {
                fields[String(decoding: line[..<equals], as: UTF8.self)] = String(
                    decoding: line[(equals + 1)...], as: UTF8.self)
                index = end + 1
            } else if end + 9 <= datagram.count {
                var length = 0
                for shift in 0..<8 { length |= Int(datagram[end + 1 + shift]) << (8 * shift) }
                let start = end + 9
                let stop = min(datagram.count, start + length)
                fields[String(decoding: line, as: UTF8.self)] = String(decoding: datagram[start..<stop], as: UTF8.self)
                index = stop + 1
            } else {
                break
            }
        }
        return fields
    }
}

/// What tests ask of a started process, whichever way it was started.
protocol RunningProcess {
    var processIdentifier: Int32 { get }
    var isRunning: Bool { get }
    var terminationStatus: Int32 { get }
}

extension Process: RunningProcess {}

/// A process started with posix_spawn, for lockd and its launchers.
///
/// Foundation's `Process` takes the closing of a descriptor it hands the child as the child's
/// exit; systemd-socket-activate closes every descriptor before it execs lockd, and Foundation
/// then blocks in waitpid and stops reaping every other child of the test.
final class ChildProcess: RunningProcess {
    let processIdentifier: Int32
    private var status: Int32?

    init(_ command: [String], environment: [String: String], output: String) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_APPEND, 0)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let merged = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let argv = command.map { strdup($0) } + [nil]
        let envp = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, command[0], &actions, nil, argv, envp)
        guard result == 0 else { throw POSIXError(POSIXErrorCode(rawValue: result) ?? .EIO) }
        processIdentifier = pid
    }

    var isRunning: Bool {
        guard status == nil else { return false }
        var raw: Int32 = 0
        guard waitpid(processIdentifier, &raw, WNOHANG) == processIdentifier else { return true }
        status = raw
        return false
    }

    /// The exit status, or the signal number for a process killed by a signal (as `Process`).
    var terminationStatus: Int32 {
        let raw = status ?? 0
        return raw & 0x7f == 0 ? (raw >> 8) & 0xff : raw & 0x7f
    }

    func waitUntilExit() {
        guard status == nil else { return }
        var raw: Int32 = 0
        while waitpid(processIdentifier, &raw, 0) < 0, errno == EINTR {}
        status = raw
    }
}

/// Lines a child writes to a pipe, each read with a deadline.
final class LineReader {
    private let fd: Int32
    private var buffer: [UInt8] = []

    init(_ pipe: Pipe) { fd = pipe.fileHandleForReading.fileDescriptor }

    /// The next line (without its newline), or `nil` at the deadline or the pipe's end.
    func line(timeout: Double) -> String? {
        let end = Date().addingTimeInterval(timeout)
        while true {
            if let newline = buffer.firstIndex(of: 10) {
                defer { buffer.removeFirst(newline + 1) }
                return String(decoding: buffer[..<newline], as: UTF8.self)
            }
            let remaining = end.timeIntervalSinceNow
            guard remaining > 0 else { return nil }
            var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&ready, 1, Int32(remaining * 1000) + 1) > 0 else { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let count = read(fd, &chunk, chunk.count)
            guard count > 0 else { return nil }
            buffer += chunk[..<count]
        }
    }
}
