import Foundation

/// A real etcd cluster from Debian's etcd-server, on free loopback ports with its data on tmpfs
/// (never the packaged default port 2379): members that can be killed, stopped and restarted.
/// For the tests and the benchmark.
public final class EtcdCluster {
    /// One member.
    public struct Member {
        public var name: String
        public var clientPort: Int
        public var peerPort: Int
        public var process: Process?
        public var clientURL: String { "http://127.0.0.1:\(clientPort)" }
        public var peerURL: String { "http://127.0.0.1:\(peerPort)" }
    }

    public private(set) var members: [Member]
    public let directory: String

    /// Starts `size` members (heartbeat 50 ms, election timeout 500 ms) and waits until every one
    /// answers as healthy. A member that exits while the cluster forms (a port that was free a
    /// moment ago may be taken by then: by another test's etcd, or by an outgoing connection)
    /// makes it start over on other ports, up to three times.
    public init(size: Int = 3) throws {
        let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        directory = base + "/lockd-etcd-\(UUID().uuidString.prefix(8))"
        members = []
        var attempt = 1
        while true {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let ports = try freePorts(2 * size)
            members = (0..<size).map { Member(name: "m\($0)", clientPort: ports[2 * $0], peerPort: ports[2 * $0 + 1]) }
            for index in members.indices { try start(index) }
            do {
                try waitHealthy()
                return
            } catch let failure as ClusterError where failure.memberExited && attempt < 3 {
                stopAll()
                try? FileManager.default.removeItem(atPath: directory)
                attempt += 1
            }
        }
    }

    deinit {
        stopAll()
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func stopAll() {
        for member in members where member.process?.isRunning == true {
            Foundation.kill(member.process!.processIdentifier, SIGCONT)
            member.process!.terminate()
            member.process!.waitUntilExit()
        }
    }

    public var endpoints: [String] { members.map(\.clientURL) }

    public func start(_ index: Int) throws {
        let member = members[index]
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/etcd")
        process.arguments = [
            "--name", member.name, "--data-dir", "\(directory)/\(member.name)",
            "--listen-client-urls", member.clientURL, "--advertise-client-urls", member.clientURL,
            "--listen-peer-urls", member.peerURL, "--initial-advertise-peer-urls", member.peerURL,
            "--initial-cluster", members.map { "\($0.name)=\($0.peerURL)" }.joined(separator: ","),
            "--initial-cluster-state", "new", "--initial-cluster-token",
            URL(fileURLWithPath: directory).lastPathComponent,
            "--heartbeat-interval", "50", "--election-timeout", "500", "--log-level", "error",
        ]
        let log = "\(directory)/\(member.name).log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        process.standardOutput = FileHandle(forWritingAtPath: log)
        process.standardError = FileHandle(forWritingAtPath: log)
        process.standardInput = FileHandle.nullDevice
        try process.run()
        members[index].process = process
    }

    /// Kills a member (SIGKILL) and waits for it.
    public func kill(_ index: Int) {
        guard let process = members[index].process, process.isRunning else { return }
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Sends a signal (SIGSTOP, SIGCONT) to a member.
    public func signal(_ index: Int, _ signal: Int32) {
        if let process = members[index].process { Foundation.kill(process.processIdentifier, signal) }
    }

    /// The index of the current leader, from `etcdctl endpoint status`.
    public func leader() -> Int? {
        for (index, member) in members.enumerated() where member.process?.isRunning == true {
            let output = etcdctl(["--endpoints", member.clientURL, "endpoint", "status", "-w", "json"])
            guard let data = output.data(using: .utf8),
                let list = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]],
                let status = list.first?["Status"] as? [String: Any],
                let header = status["header"] as? [String: Any]
            else { continue }
            let memberID = "\(header["member_id"] ?? "")"
            let leaderID = "\(status["leader"] ?? "")"
            if memberID == leaderID { return index }
        }
        return nil
    }

    /// Runs etcdctl (API v3) and returns what it printed.
    @discardableResult
    public func etcdctl(_ arguments: [String]) -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/etcdctl")
        process.arguments = arguments
        process.environment = ["ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"]
        let pipe = Pipe()
        process.standardOutput = pipe
        // `endpoint health` writes its verdicts on stderr.
        process.standardError = pipe
        guard (try? process.run()) != nil else { return "" }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    /// Waits until every running member answers as healthy. Generous: on a loaded machine (the
    /// tests under ThreadSanitizer) the first election can take many election timeouts. A member
    /// that exits meanwhile ends the wait at once. Either failure quotes the members' logs (their
    /// directory goes with the cluster).
    public func waitHealthy(timeout: Double = 90) throws {
        let deadline = Date().addingTimeInterval(timeout)
        let running = members.filter { $0.process?.isRunning == true }
        let endpoints = running.map(\.clientURL).joined(separator: ",")
        while Date() < deadline {
            if let gone = running.first(where: { $0.process?.isRunning == false }) {
                throw ClusterError(
                    "etcd member \(gone.name) exited while the cluster formed\(logs())", memberExited: true)
            }
            let output = etcdctl(["--endpoints", endpoints, "endpoint", "health", "--command-timeout", "3s"])
            if output.components(separatedBy: "is healthy").count - 1 == running.count { return }
            usleep(100_000)
        }
        throw ClusterError("etcd did not become healthy within \(timeout) s\(logs())")
    }

    /// The last lines of each member's log, for an error message.
    private func logs() -> String {
        members.map { member in
            let log = (try? String(contentsOfFile: "\(directory)/\(member.name).log", encoding: .utf8)) ?? ""
            return "\n\(member.name) (ports \(member.clientPort), \(member.peerPort)): " + log.suffix(1500)
        }.joined()
    }
}

public struct ClusterError: Error, CustomStringConvertible {
    public var description: String
    /// A member exited while the cluster formed (and another try may do better).
    public var memberExited = false

    public init(_ description: String, memberExited: Bool = false) {
        self.description = description
        self.memberExited = memberExited
    }
}

/// Loopback TCP ports that were free a moment ago (bound to port 0, then closed).
public func freePorts(_ count: Int) throws -> [Int] {
    var sockets: [Int32] = []
    defer { sockets.forEach { close($0) } }
    var ports: [Int] = []
    for _ in 0..<count {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard bound else { throw ClusterError("cannot find a free port") }
        sockets.append(fd)
        ports.append(Int(UInt16(bigEndian: address.sin_port)))
    }
    return ports
}
