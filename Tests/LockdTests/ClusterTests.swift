import EtcdLauncher
import Foundation
import LockClient
import LockProtocol
import Testing

/// lockd nodes sharing locks through a real 3-member etcd cluster, each node pointed at a
/// different member, each with its own socket.
final class LockdCluster {
    let etcd: EtcdCluster
    private(set) var nodes: [Daemon] = []
    let leaseTTL: Int

    init(nodes count: Int = 3, leaseTTL: Int = 2) throws {
        etcd = try EtcdCluster()
        self.leaseTTL = leaseTTL
        for index in 0..<count {
            let endpoints = (0..<etcd.members.count).map { etcd.endpoints[(index + $0) % etcd.members.count] }
            nodes.append(
                try Daemon(arguments: [
                    "--backend", "etcd", "--etcd-endpoints", endpoints.joined(separator: ","), "--node", "n\(index)",
                    "--lease-ttl", "\(leaseTTL)",
                ]))
        }
        // Each node has joined (its lease granted) before the test starts.
        for node in nodes where !eventually(timeout: 60, { node.log.contains("joined the cluster") }) {
            Issue.record("a node did not join: \(node.log)")
        }
    }

    subscript(index: Int) -> Daemon { nodes[index] }
}

/// A client connection that holds or waits, read from the test's thread.
struct Client {
    let connection: LockConnection

    init(_ node: Daemon) throws { connection = try node.connect() }

    /// Sends an acquire and returns its id (the answer comes later when it waits).
    func acquire(_ lock: String, wait: Double? = nil, mode: String = "exclusive") throws -> RequestID {
        var fields: [(key: String, value: JSONValue)] = [("lock", .string(lock)), ("mode", .string(mode))]
        if let wait { fields.append(("wait", .double(wait))) }
        return try connection.send(op: "acquire", fields)
    }

    func answer(to id: RequestID, timeout: Double = 10) throws -> JSONValue {
        try connection.response(to: id, timeout: timeout)
    }

    func release(_ lock: String) throws -> JSONValue {
        try connection.call(op: "release", [("lock", .string(lock))])
    }
}

extension EtcdSuites {
    @Suite("lockd nodes sharing locks through a real etcd cluster", .serialized)
    struct ClusterTests {
        @Test("hello reports the backend and the node; a try on another node is busy and says which node holds")
        func hello() throws {
            let cluster = try LockdCluster(nodes: 2)
            let hello = try cluster[0].connect().ask("hello")
            #expect(hello["backend"]?.string == "etcd" && hello["node"]?.string == "n0", "\(hello)")
            let holder = try Client(cluster[0])
            #expect(try holder.answer(to: holder.acquire("db")).isOK)
            let busy = try cluster[1].lockctl("acquire", "db", "--no-wait")
            #expect(busy.status == 1 && busy.stderr.contains("node n0"), "\(busy)")
            // Status shows what the node's watch has delivered, which may lag the busy answer
            // (that one comes from etcd's transaction).
            let observer = try cluster[1].connect()
            var status = JSONValue.null
            let seen = try eventually {
                status = try observer.ask("status", [("lock", "db")])
                let holders = status["locks"]?.elements.first?["holders"]?.elements ?? []
                return holders.count == 1 && holders.first?["node"]?.string == "n0"
            }
            #expect(seen, "\(status)")
            // A name under local/ never leaves its host.
            for node in [cluster[1], cluster[0]] {
                let client = try Client(node)
                #expect(try client.answer(to: client.acquire("local/x", wait: 0)).isOK)
            }
        }

        @Test("mutual exclusion and FIFO across nodes, with fences that grow across the cluster")
        func fifo() throws {
            let cluster = try LockdCluster()
            let first = try Client(cluster[0])
            let granted = try first.answer(to: first.acquire("db"))
            #expect(granted.isOK, "\(granted)")
            let second = try Client(cluster[1])
            let secondID = try second.acquire("db")
            usleep(300_000)
            let third = try Client(cluster[2])
            let thirdID = try third.acquire("db")
            usleep(300_000)
            // A newcomer on the holding node queues behind the other nodes' waiters.
            let late = try Client(cluster[0])
            let lateID = try late.acquire("db")
            usleep(300_000)
            #expect(try first.release("db").isOK)
            let secondGrant = try second.answer(to: secondID)
            #expect(secondGrant.isOK, "\(secondGrant)")
            #expect(try second.release("db").isOK)
            let thirdGrant = try third.answer(to: thirdID)
            #expect(thirdGrant.isOK, "\(thirdGrant)")
            #expect(try third.release("db").isOK)
            let lateGrant = try late.answer(to: lateID)
            #expect(lateGrant.isOK, "\(lateGrant)")
            let fences = [granted, secondGrant, thirdGrant, lateGrant].compactMap { $0["fence"]?.intValue }
            #expect(fences.count == 4 && fences == fences.sorted() && Set(fences).count == 4, "\(fences)")
        }

        @Test("kill -9 of a node: its hold goes to another node after its lease's ttl, not before")
        func crashedNode() throws {
            let cluster = try LockdCluster(nodes: 2)
            let holder = try Client(cluster[0])
            #expect(try holder.answer(to: holder.acquire("db")).isOK)
            let waiter = try Client(cluster[1])
            let id = try waiter.acquire("db")
            usleep(200_000)
            let crashed = Date()
            cluster[0].crash()
            let grant = try waiter.answer(to: id, timeout: 15)
            let after = Date().timeIntervalSince(crashed)
            #expect(grant.isOK, "\(grant)")
            // The last keep-alive went out at most ttl/3 before the crash.
            let ttl = Double(cluster.leaseTTL)
            #expect(after >= ttl * 2 / 3 - 0.2 && after < ttl + 4, "granted \(after) s after the crash")
        }

        @Test(
            "a node stopped past its ttl revokes its holds (lost) when it runs again; the other node had them meanwhile"
        )
        func pausedNode() throws {
            let cluster = try LockdCluster(nodes: 2)
            let holder = try Client(cluster[0])
            let heldFence = try holder.answer(to: holder.acquire("db"))["fence"]?.intValue ?? 0
            let waiter = try Client(cluster[1])
            let id = try waiter.acquire("db")
            kill(cluster[0].process.processIdentifier, SIGSTOP)
            let grant = try waiter.answer(to: id, timeout: 15)
            kill(cluster[0].process.processIdentifier, SIGCONT)
            #expect(grant.isOK && (grant["fence"]?.intValue ?? 0) > heldFence, "\(grant)")
            let event = try holder.connection.next(timeout: 5)
            #expect(
                event?["event"]?.string == "revoked" && event?["reason"]?.string == "lost",
                "\(String(describing: event))")
            // The paused node serves again once it has registered anew.
            let again = try Client(cluster[0])
            let againID = try again.acquire("db", wait: 10)
            #expect(try waiter.release("db").isOK)
            #expect(try again.answer(to: againID, timeout: 15).isOK)
        }

        @Test("quorum loss: a node revokes its holds (lost) by its deadline, shielded or not")
        func quorumLoss() throws {
            let cluster = try LockdCluster(nodes: 1)
            let holder = try Client(cluster[0])
            #expect(try holder.answer(to: holder.acquire("db")).isOK)
            #expect(try holder.connection.call(op: "shield", [("lock", "db"), ("on", true)]).isOK)
            let start = Date()
            cluster.etcd.signal(1, SIGSTOP)
            cluster.etcd.signal(2, SIGSTOP)
            defer {
                cluster.etcd.signal(1, SIGCONT)
                cluster.etcd.signal(2, SIGCONT)
            }
            let event = try holder.connection.next(timeout: Double(cluster.leaseTTL) + 5)
            let after = Date().timeIntervalSince(start)
            #expect(event?["reason"]?.string == "lost", "\(String(describing: event))")
            #expect(
                after < Double(cluster.leaseTTL) + 1, "lost after \(after) s; the lease's ttl is \(cluster.leaseTTL) s")
        }

        @Test("killing the etcd leader: holds stay, and locks hand over again after the election")
        func leaderKilled() throws {
            let cluster = try LockdCluster(nodes: 2, leaseTTL: 3)
            let holder = try Client(cluster[0])
            #expect(try holder.answer(to: holder.acquire("db")).isOK)
            let waiter = try Client(cluster[1])
            let id = try waiter.acquire("db")
            guard let leader = cluster.etcd.leader() else {
                Issue.record("no leader found")
                return
            }
            cluster.etcd.kill(leader)
            // The hold survives the election (it ends well before the node's deadline) ...
            usleep(1_500_000)
            #expect(try holder.connection.next(timeout: 0.2) == nil, "no revocation")
            // ... and the lock hands over afterwards.
            #expect(try holder.release("db").isOK)
            let grant = try waiter.answer(to: id, timeout: 15)
            #expect(grant.isOK, "\(grant)")
            let again = try Client(cluster[0])
            let againID = try again.acquire("db", wait: 15)
            #expect(try waiter.release("db").isOK)
            #expect(try again.answer(to: againID, timeout: 20).isOK)
        }

        @Test("the [cluster] table joins a node as the command line does; a table that cannot work stops lockd (78)")
        func configurationTable() throws {
            let etcd = try EtcdCluster()
            let endpoints = etcd.endpoints.map { "\"\($0)\"" }.joined(separator: ", ")
            let node = try Daemon(
                config:
                    "[cluster]\nbackend = \"etcd\"\nendpoints = [\(endpoints)]\nnode = \"from-file\"\nlease_ttl = 2\n")
            let hello = try node.connect().ask("hello")
            #expect(hello["backend"]?.string == "etcd" && hello["node"]?.string == "from-file", "\(hello)")
            // --backend local keeps it off the cluster the file names.
            let local = try Daemon(
                arguments: ["--backend", "local"], config: "[cluster]\nbackend = \"etcd\"\nendpoints = [\(endpoints)]\n"
            )
            #expect(try local.connect().ask("hello")["backend"]?.string == "local")
            let bad = try Daemon(config: "[cluster]\nbackend = \"etcd\"\n", waitForSocket: false)
            #expect(waitExit(bad.process) == 78)
            #expect(bad.log.contains("endpoints"), "\(bad.log)")
        }

        @Test("lockctl run --shield: the command finishes, and lockctl says the lock was lost (exit 3)")
        func shieldedRunLost() throws {
            let cluster = try LockdCluster(nodes: 1)
            let members = [1, 2].compactMap { cluster.etcd.members[$0].process?.processIdentifier }
            defer { for pid in members { kill(pid, SIGCONT) } }
            let output = try cluster[0].shell(
                """
                $L run --shield migrate -- sh -c 'sleep 4; echo finished' & run=$!
                sleep 0.5
                kill -STOP \(members.map(String.init).joined(separator: " "))
                wait $run; echo "exit=$?"
                """, timeout: 30)
            #expect(output.stdout.contains("finished") && output.stdout.contains("exit=3"), "\(output)")
            #expect(output.stderr.contains("lost"), "\(output.stderr)")
        }
    }
}
