import EtcdLauncher
import ExtrasBase64
import Foundation
import LockCluster
import LockProtocol
import NIOCore
import NIOPosix

/// The cluster steps (`--cluster`): three lockd nodes on a real 3-member etcd cluster, against
/// etcd's own lock recipe (`/v3/lock/lock` and `/unlock` through the gateway, what `etcdctl lock`
/// does) on the same cluster, in the same run.
enum ClusterBench {
    static func run(binaries: String, directory: String, seconds: Double, shellRuns: Int) throws {
        let etcd = try EtcdCluster()
        var nodes: [Server] = []
        defer { nodes.forEach { $0.stop() } }
        for index in 0..<3 {
            let endpoints = (0..<3).map { etcd.endpoints[(index + $0) % 3] }.joined(separator: ",")
            let socket = directory + "/node\(index).sock"
            nodes.append(
                try Server.start(
                    binaries + "/lockd",
                    [
                        "--socket", socket, "--state-dir", "", "--log-level", "warning", "--backend", "etcd",
                        "--etcd-endpoints", endpoints, "--node", "n\(index)",
                    ], socket: socket))
        }
        // The nodes register their leases right after they listen.
        usleep(500_000)
        let sockets = nodes.map(\.socket)
        var report = Report(seconds: seconds)
        let ok = Array(#""ok":true"#.utf8)
        func pair(_ lock: @escaping @Sendable (Int) -> String)
            -> @Sendable (Int) -> ([UInt8], [UInt8], [UInt8], [UInt8])
        {
            { index in
                let name = lock(index)
                return (
                    Array("{\"op\":\"acquire\",\"id\":1,\"lock\":\"\(name)\"}\n".utf8), ok,
                    Array("{\"op\":\"release\",\"id\":2,\"lock\":\"\(name)\"}\n".utf8), ok
                )
            }
        }
        func lockd(_ name: String, clients: Int, nodes count: Int, lock: @escaping @Sendable (Int) -> String) {
            FileHandle.standardError.write(Data("\(name)...\n".utf8))
            report.add(
                name,
                runLoad(
                    clients: clients, seconds: seconds, path: sockets[0], paths: Array(sockets.prefix(count)),
                    requests: pair(lock)))
        }
        func recipe(_ name: String, clients: Int, lock: @escaping @Sendable (Int) -> String) {
            FileHandle.standardError.write(Data("\(name)...\n".utf8))
            report.add(name, etcdRecipe(clients: clients, seconds: seconds, endpoints: etcd.endpoints, lock: lock))
        }
        lockd("lockd 1 node x1", clients: 1, nodes: 1) { "c-\($0)" }
        recipe("etcd recipe x1", clients: 1) { "e-\($0)" }
        lockd("lockd 1 node x16", clients: 16, nodes: 1) { "c-\($0)" }
        lockd("lockd 3 nodes x16", clients: 16, nodes: 3) { "c-\($0)" }
        recipe("etcd recipe x16", clients: 16) { "e-\($0)" }
        lockd("lockd contended 1 node x16", clients: 16, nodes: 1) { _ in "hot" }
        lockd("lockd contended 3 nodes x16", clients: 16, nodes: 3) { _ in "hot" }
        recipe("etcd recipe contended x16", clients: 16) { _ in "hot-etcd" }
        // Two clients on two nodes take turns: every hand-off goes from one node to the other.
        lockd("lockd remote hand-off x2", clients: 2, nodes: 2) { _ in "ping" }
        recipe("etcd recipe hand-off x2", clients: 2) { _ in "ping-etcd" }
        // A hold taken once, then re-entered and left again: decided on the node alone.
        report.add(
            "lockd re-entrant x1",
            runLoad(
                clients: 1, seconds: seconds, path: sockets[0],
                setup: { Array("{\"op\":\"acquire\",\"id\":0,\"lock\":\"re-\($0)\"}\n".utf8) },
                requests: pair { "re-\($0)" }))
        report.print(redis: false)
        for (name, baseline) in [
            ("lockd remote hand-off x2", "etcd recipe hand-off x2"),
            ("lockd contended 3 nodes x16", "etcd recipe contended x16"),
        ] {
            guard let ours = report.rows.first(where: { $0.name == name })?.result,
                let theirs = report.rows.first(where: { $0.name == baseline })?.result
            else { continue }
            Swift.print(
                String(
                    format: "%@: hand-off p50 %.2fms p99 %.2fms; %@: p50 %.2fms p99 %.2fms",
                    name, LoadResult.percentile(ours.handOffs, 0.5) * 1e3,
                    LoadResult.percentile(ours.handOffs, 0.99) * 1e3, baseline,
                    LoadResult.percentile(theirs.handOffs, 0.5) * 1e3,
                    LoadResult.percentile(theirs.handOffs, 0.99) * 1e3))
        }
        for (name, baseline) in [("lockd 1 node x16", "etcd recipe x16"), ("lockd 3 nodes x16", "etcd recipe x16")] {
            guard let ours = report.rows.first(where: { $0.name == name })?.result,
                let theirs = report.rows.first(where: { $0.name == baseline })?.result
            else { continue }
            Swift.print(
                String(
                    format: "16 clients, own locks: %@ / %@ throughput %.2fx (target >= 2)", name, baseline,
                    ours.perSecond / theirs.perSecond))
        }
        if shellRuns > 0 {
            let runs = max(5, shellRuns / 4)
            let lockctl = ScaleAndShell.wallMedian(
                binaries + "/lockctl", ["run", "shell-bench", "--", "/bin/true"],
                environment: ["LOCKD_SOCKET": sockets[0]], runs: runs)
            let etcdctl = ScaleAndShell.wallMedian(
                "/usr/bin/etcdctl", ["--endpoints", etcd.endpoints[0], "lock", "shell-bench-etcd", "/bin/true"],
                environment: ["ETCDCTL_API": "3"], runs: runs)
            Swift.print(
                String(
                    format: "shell: lockctl run NAME true %.2fms (on a node), etcdctl lock NAME true %.2fms (%.2fx)",
                    lockctl * 1e3, etcdctl * 1e3, lockctl / etcdctl))
        }
    }

    /// etcd's own recipe through its gateway, one connection per client: lock (a lease of the
    /// client's, granted once), then unlock.
    static func etcdRecipe(
        clients: Int, seconds: Double, endpoints: [String], lock: @escaping @Sendable (Int) -> String
    ) -> LoadResult {
        let group = MultiThreadedEventLoopGroup.singleton
        let parsed = endpoints.compactMap(GatewayTransport.Endpoint.init(url:))
        return runPairs(clients: clients, seconds: seconds) { index in
            let loop = group.next()
            let endpoint = [parsed[index % parsed.count]]
            guard
                let transport = try? loop.submit({
                    NIOLoopBound(GatewayTransport(endpoints: endpoint, loop: loop), eventLoop: loop)
                }).wait()
            else { return nil }
            func call(_ path: String, _ body: JSONValue) -> JSONValue? {
                try? loop.flatSubmit { transport.value.call(path, body, timeout: .seconds(60)) }.wait()
            }
            guard let lease = call("/v3/lease/grant", ["TTL": "60"])?["ID"]?.string else { return nil }
            let name = JSONValue.string(Base64.encodeToString(bytes: Array(lock(index).utf8)))
            let key = Box()
            return (
                {
                    key.value = call("/v3/lock/lock", ["name": name, "lease": .string(lease)])?["key"]
                    return key.value != nil
                },
                { key.value.flatMap { call("/v3/lock/unlock", ["key": $0]) } != nil }
            )
        }
    }

    /// The key of the client's current etcd lock, between its two calls.
    final class Box {
        var value: JSONValue?
    }
}
