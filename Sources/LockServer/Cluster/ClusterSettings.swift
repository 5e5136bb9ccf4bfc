import Glibc
import LockCluster
import LockCore

/// How this lockd joins a cluster of lockd nodes that share locks through etcd
/// (`--backend etcd`; docs/cluster.md). Without it lockd is a single host's lock service.
package struct ClusterSettings: Sendable, Equatable {
    /// etcd members' client URLs (`http://HOST:PORT`).
    package var endpoints: [GatewayTransport.Endpoint]
    /// This node's name: unique in the cluster, 1-64 bytes of A-Z a-z 0-9 . _ -.
    package var node: String
    /// The key prefix of this cluster's locks in etcd.
    package var prefix: String = "/lockd/"
    /// The ttl of this node's etcd lease, in seconds: how long its holds outlive it (or its
    /// link to etcd) before another node can have them.
    package var leaseTTL: Int = 5
    /// How long one etcd call may take before the member is given up for the next.
    package var requestTimeout: Double = 1
    /// Lock names with one of these prefixes never leave this host.
    package var localPrefixes: [String] = ["local/"]

    package init(endpoints: [GatewayTransport.Endpoint], node: String) {
        self.endpoints = endpoints
        self.node = node
    }

    /// Why `node` cannot be a node name, or `nil` when it can.
    package static func problem(withNode node: String) -> String? {
        let allowed = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-".utf8)
        guard (1...64).contains(node.utf8.count), node.utf8.allSatisfy(allowed.contains) else {
            return "a node name is 1-64 bytes of A-Z a-z 0-9 . _ -, not \"\(node)\""
        }
        return nil
    }

    /// This host's name, the default node name.
    package static var hostName: String {
        var name = [UInt8](repeating: 0, count: 256)
        _ = name.withUnsafeMutableBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { gethostname($0.baseAddress!, 255) }
        }
        return String(decoding: name.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// Whether `name` is shared with the cluster (else it stays on this host).
    func isShared(_ name: LockName) -> Bool {
        !localPrefixes.contains { name.rawValue.hasPrefix($0) }
    }

    /// The safety margin before the lease's end at which this node gives its holds up: etcd may
    /// hand them to another node from the end on, and this node's clock and timers are not exact.
    var margin: Double { max(0.5, Double(leaseTTL) / 5) }
}
