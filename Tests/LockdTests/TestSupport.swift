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
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
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
    let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
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
    let process: Process
    let logPath: String

    init(arguments: [String] = [], socketName: String = "lockd.sock") throws {
        directory =
            FileManager.default.temporaryDirectory
            .appendingPathComponent("lockd-test-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        socket = directory + "/" + socketName
        logPath = directory + "/lockd.log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process = Process()
        process.executableURL = URL(fileURLWithPath: Binaries.lockd)
        process.arguments = ["--socket", socket, "--log-level", "debug"] + arguments
        process.standardError = FileHandle(forWritingAtPath: logPath)
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let up = eventually { (try? LockConnection(path: socket)) != nil }
        if !up { Issue.record("lockd did not start: \(log)") }
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

func waitExit(_ process: Process, timeout: Double = 10) -> Int32? {
    guard eventually(timeout: timeout, { !process.isRunning }) else {
        kill(process.processIdentifier, SIGKILL)
        return nil
    }
    return process.terminationStatus
}

extension LockConnection {
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
        if !backlog.isEmpty { return takeBacklog() }
        return try readMessage(timeout: timeout)
    }
}

extension JSONValue {
    var code: String? { self["error"]?["code"]?.string }
    var isOK: Bool { self["ok"]?.bool == true }
    var intValue: Int64? { if case .int(let value) = self { value } else { nil } }
}
