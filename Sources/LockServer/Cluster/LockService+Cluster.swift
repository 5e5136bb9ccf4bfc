import LockCore
import LockProtocol

extension LockService {
    /// A status answer's `locks` with the cluster's view: every holder and waiter gets its
    /// `node`, and other nodes' keys of shared locks appear as holders (granted keys) and waiters,
    /// owner `{"node": NAME}` (docs/cluster.md).
    func withClusterView(_ locks: JSONValue, cluster: ClusterLocks, only name: LockName?) -> JSONValue {
        let node = JSONValue.string(cluster.settings.node)
        var seen: Set<String> = []
        var out: [JSONValue] = locks.elements.map { lock in
            guard case .object(var fields) = lock, let lockName = lock["name"]?.string else { return lock }
            seen.insert(lockName)
            var remote: (holders: [JSONValue], waiters: [JSONValue]) = ([], [])
            if let name = LockName(lockName), cluster.isShared(name) { remote = remoteEntries(name, cluster) }
            for index in fields.indices where ["holders", "waiters"].contains(fields[index].key) {
                let local = fields[index].value.elements.map { Self.adding(("node", node), to: $0) }
                fields[index].value = .array(local + (fields[index].key == "holders" ? remote.holders : remote.waiters))
            }
            return .object(fields)
        }
        let remoteNames = name.map { [$0] } ?? cluster.remoteLockNames.sorted { $0.rawValue < $1.rawValue }
        for lock in remoteNames where !seen.contains(lock.rawValue) && cluster.isShared(lock) {
            let (holders, waiters) = remoteEntries(lock, cluster)
            guard !holders.isEmpty || !waiters.isEmpty else { continue }
            let first = holders.first ?? waiters.first
            out.append(
                .object([
                    ("name", .string(lock.rawValue)), ("mode", first?["mode"] ?? "exclusive"),
                    ("fence", holders.compactMap { $0["fence"] }.last ?? 0), ("holders", .array(holders)),
                    ("waiters", .array(waiters)),
                ]))
        }
        return .array(out)
    }

    private func remoteEntries(_ name: LockName, _ cluster: ClusterLocks) -> (
        holders: [JSONValue], waiters: [JSONValue]
    ) {
        let (holders, waiters) = cluster.remoteEntries(of: name)
        func identity(_ node: String) -> [(key: String, value: JSONValue)] {
            [
                ("owner", .object([("node", .string(node))])), ("node", .string(node)), ("pid", .null), ("uid", .null),
                ("cmdline", .null),
            ]
        }
        return (
            holders.map { holder in
                .object(
                    identity(holder.node) + [
                        ("mode", .string(holder.mode.rawValue)), ("count", .null),
                        ("fence", .int(Int64(holder.fence))), ("since", .null), ("shielded", 0), ("expires", .null),
                        ("deferred", .null),
                    ])
            },
            waiters.map { waiter in
                .object(identity(waiter.node) + [("mode", .string(waiter.mode.rawValue)), ("since", .null)])
            }
        )
    }

    private static func adding(_ field: (String, JSONValue), to value: JSONValue) -> JSONValue {
        guard case .object(let fields) = value else { return value }
        return .object(fields + [(key: field.0, value: field.1)])
    }
}
