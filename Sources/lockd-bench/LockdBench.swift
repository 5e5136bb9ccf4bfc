import ArgumentParser
import CLockSupport
import Foundation
import LockClient

/// Measures lockd against the round-trip floor and redis-server, side by side in one run, with
/// one client code for all three (RawLineClient), and writes a table and JSON.
@main
struct LockdBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lockd-bench",
        abstract: "Benchmark lockd (release build next to this binary) against a bare socket and redis-server.")

    @Option(help: "Seconds measured per step (after a warm-up).") var seconds = 2.0
    @Option(help: "Client counts for the many-clients steps.") var clients = "1,16,64,256"
    @Option(help: "Where to write the JSON results.") var json = "lockd-bench.json"
    @Option(help: "redis-server to compare with (skipped when absent).") var redis = "/usr/bin/redis-server"
    @Option(help: "Idle connections for the scale step (0 skips it).") var idle = 10_000
    @Option(help: "Held locks for the scale step (0 skips it).") var held = 1_000_000
    @Option(help: "Runs of each command in the shell step (0 skips it).") var shellRuns = 200
    @Option(help: "The lockctl the shell step times (default: the one next to this binary).") var lockctl: String?
    @Flag(
        help:
            "Run the cluster steps instead: 3 lockd nodes on a real 3-member etcd cluster against etcd's own lock recipe."
    )
    var cluster = false

    func run() throws {
        lockd_raise_file_limit()
        // A server that closes on us must give EPIPE, not end the benchmark.
        signal(SIGPIPE, SIG_IGN)
        let counts = clients.split(separator: ",").compactMap { Int($0) }
        let binaries = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
            .deletingLastPathComponent().path
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lockd-bench-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        if cluster {
            return try ClusterBench.run(
                binaries: binaries, directory: directory, seconds: seconds, shellRuns: shellRuns)
        }

        let acquireAnswer =
            Array(#"{"id":1,"ok":true,"lock":"b-1","mode":"exclusive","count":1,"fence":123456}"#.utf8) + [10]
        let floor = try EchoFloor(path: directory + "/floor.sock", answer: acquireAnswer)
        let epollFloor = try EpollFloor(path: directory + "/epoll-floor.sock", answer: acquireAnswer)
        // Room for the idle connections of the scale step.
        let config = directory + "/lockd.toml"
        try "[limits]\nmax_clients = \(idle + 1024)\n".write(toFile: config, atomically: true, encoding: .utf8)
        let lockd = try Server.start(
            binaries + "/lockd",
            [
                "--socket", directory + "/lockd.sock", "--config", config, "--state-dir", directory + "/state",
                "--log-level", "warning",
            ], socket: directory + "/lockd.sock")
        defer { lockd.stop() }
        let redisServer =
            FileManager.default.isExecutableFile(atPath: redis)
            ? try Server.start(
                redis,
                [
                    "--port", "0", "--unixsocket", directory + "/redis.sock", "--unixsocketperm", "700", "--save", "",
                    "--appendonly", "no",
                ], socket: directory + "/redis.sock")
            : nil
        defer { redisServer?.stop() }

        var report = Report(seconds: seconds)
        let ok = Array(#""ok":true"#.utf8)
        func lockPair(_ lock: @escaping @Sendable (Int) -> String, owner: String = "")
            -> @Sendable (Int) -> (
                [UInt8], [UInt8], [UInt8], [UInt8]
            )
        {
            { index in
                let name = lock(index)
                return (
                    Array("{\"op\":\"acquire\",\"id\":1,\"lock\":\"\(name)\"\(owner)}\n".utf8), ok,
                    Array("{\"op\":\"release\",\"id\":2,\"lock\":\"\(name)\"\(owner)}\n".utf8), ok
                )
            }
        }
        let floorPair: @Sendable (Int) -> ([UInt8], [UInt8], [UInt8], [UInt8]) = { _ in
            let request = Array(#"{"op":"acquire","id":1,"lock":"b-1"}"#.utf8) + [10]
            return (request, ok, request, ok)
        }
        let redisPair: @Sendable (Int) -> ([UInt8], [UInt8], [UInt8], [UInt8]) = { index in
            let key = "b-\(index)"
            return (
                Array(
                    "*6\r\n$3\r\nSET\r\n$\(key.utf8.count)\r\n\(key)\r\n$1\r\n1\r\n$2\r\nNX\r\n$2\r\nPX\r\n$5\r\n30000\r\n"
                        .utf8),
                Array("+OK".utf8), Array("*2\r\n$3\r\nDEL\r\n$\(key.utf8.count)\r\n\(key)\r\n".utf8), Array(":1".utf8)
            )
        }

        report.add("floor", runLoad(clients: 1, seconds: seconds, path: floor.path, requests: floorPair))
        report.add(
            "lockd uncontended",
            runLoad(
                clients: 1, seconds: seconds, path: lockd.socket, serverPID: lockd.process.processIdentifier,
                requests: lockPair { "b-\($0)" }))
        report.add(
            "lockd durable (token)",
            runLoad(
                clients: 1, seconds: seconds, path: lockd.socket, serverPID: lockd.process.processIdentifier,
                requests: lockPair({ "d-\($0)" }, owner: #","owner":{"token":"bench","ttl":60}"#)))
        // Many clients with durable holds: one fdatasync per event-loop turn serves them all.
        report.add(
            "lockd durable x16 (token)",
            runLoad(
                clients: 16, seconds: seconds, path: lockd.socket, serverPID: lockd.process.processIdentifier,
                requests: lockPair({ "d-\($0)" }, owner: #","owner":{"token":"bench","ttl":60}"#)))
        if let redisServer {
            report.add(
                "redis uncontended",
                runLoad(
                    clients: 1, seconds: seconds, path: redisServer.socket,
                    serverPID: redisServer.process.processIdentifier, requests: redisPair))
        }
        for count in counts {
            report.add(
                "floor x\(count)", runLoad(clients: count, seconds: seconds, path: floor.path, requests: floorPair))
            report.add(
                "epoll floor x\(count)",
                runLoad(
                    clients: count, seconds: seconds, path: epollFloor.path, serverThread: epollFloor.threadID,
                    requests: floorPair))
            report.add(
                "lockd distinct x\(count)",
                runLoad(
                    clients: count, seconds: seconds, path: lockd.socket, serverPID: lockd.process.processIdentifier,
                    requests: lockPair { "b-\($0)" }))
            if let redisServer {
                report.add(
                    "redis distinct x\(count)",
                    runLoad(
                        clients: count, seconds: seconds, path: redisServer.socket,
                        serverPID: redisServer.process.processIdentifier, requests: redisPair))
            }
        }
        for count in [16, 64] {
            report.add(
                "lockd contended x\(count)",
                runLoad(
                    clients: count, seconds: seconds, path: lockd.socket, serverPID: lockd.process.processIdentifier,
                    requests: lockPair { _ in "hot" }))
        }
        // The same, with every client holding a lock of its own: a waiter that holds something
        // gets the full deadlock check.
        report.add(
            "lockd contended+held x64",
            runLoad(
                clients: 64, seconds: seconds, path: lockd.socket, serverPID: lockd.process.processIdentifier,
                setup: { Array("{\"op\":\"acquire\",\"id\":0,\"lock\":\"own-\($0)\"}\n".utf8) },
                requests: lockPair { _ in "hot-held" }))
        if shellRuns > 0 {
            report.shell = ShellTimes(
                lockctl: lockctl ?? binaries + "/lockctl", socket: lockd.socket, directory: directory, runs: shellRuns)
        }
        if idle > 0 || held > 0 {
            report.scale = ScaleAndShell.scale(
                socket: lockd.socket, pid: lockd.process.processIdentifier, idle: idle, held: held)
        }
        report.print(redis: redisServer != nil)
        try report.write(json: json)
        Swift.print("JSON: \(json)")
    }
}

/// A server process the benchmark starts and stops.
struct Server {
    let process: Process
    let socket: String

    static func start(_ path: String, _ arguments: [String], socket: String) throws -> Server {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        for _ in 0..<500 {
            if RawLineClient(path: socket) != nil { return Server(process: process, socket: socket) }
            usleep(10_000)
        }
        throw ValidationError("\(path) did not listen on \(socket)")
    }

    func stop() {
        process.terminate()
        process.waitUntilExit()
    }
}
