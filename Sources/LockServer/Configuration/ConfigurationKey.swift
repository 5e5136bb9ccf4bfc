import LockCluster
import Logging
import TOMLKit

/// One key of lockd.toml: where it lives, how it is read and checked, what a reload does with
/// it, and how it shows in the log. ``all`` is the one table that drives parsing
/// (``ConfigurationFile``), reloads (``ConfigurationChanges``, ``LockService/apply(_:)``) and the
/// documentation check (every key is in config/lockd.toml and docs/configuration.md).
struct ConfigurationKey: Sendable {
    typealias Parse =
        @Sendable (inout ConfigurationFile.Reader, any TOMLValueConvertible, inout LockdConfiguration)
        throws(ConfigurationError) -> Void

    /// The table, e.g. `limits`.
    let section: String
    /// The key in its table, e.g. `max_clients`.
    let name: String
    /// Whether a reload applies a new value at once; otherwise it waits for the next start.
    let appliesOnReload: Bool
    let parse: Parse
    /// The value as the log shows it.
    let show: @Sendable (LockdConfiguration) -> String
    /// Copies this key's value from the second configuration into the first.
    let transfer: @Sendable (inout LockdConfiguration, LockdConfiguration) -> Void

    /// `section.name`, as the log and the documents write it.
    var path: String { "\(section).\(name)" }

    /// A key whose value `read` takes from the file; it lands at `keyPath`.
    private init<Value: Equatable & Sendable>(
        _ section: String, _ name: String, _ keyPath: any WritableKeyPath<LockdConfiguration, Value> & Sendable,
        reload: Bool, show: @escaping @Sendable (Value) -> String = { "\($0)" },
        read:
            @escaping @Sendable (inout ConfigurationFile.Reader, any TOMLValueConvertible) throws(ConfigurationError)
            -> Value
    ) {
        self.section = section
        self.name = name
        self.appliesOnReload = reload
        self.parse = { reader, value, configuration throws(ConfigurationError) in
            configuration[keyPath: keyPath] = try read(&reader, value)
        }
        self.show = { show($0[keyPath: keyPath]) }
        self.transfer = { $0[keyPath: keyPath] = $1[keyPath: keyPath] }
    }

    /// An integer key within `range`, applied at a reload.
    private static func integer(
        _ section: String, _ name: String, _ keyPath: any WritableKeyPath<LockdConfiguration, Int> & Sendable,
        in range: ClosedRange<Int>
    ) -> ConfigurationKey {
        ConfigurationKey(section, name, keyPath, reload: true) { reader, value throws(ConfigurationError) in
            try reader.integer(value, in: range)
        }
    }

    /// A duration key where `inf` means unbounded (`nil`), applied at a reload.
    private static func bound(
        _ section: String, _ name: String, _ keyPath: any WritableKeyPath<LockdConfiguration, Double?> & Sendable,
        allowZero: Bool
    ) -> ConfigurationKey {
        ConfigurationKey(section, name, keyPath, reload: true, show: seconds) {
            reader, value throws(ConfigurationError) in
            try reader.seconds(value, allowZero: allowZero)
        }
    }

    /// A finite duration key, applied at a reload.
    private static func finite(
        _ section: String, _ name: String, _ keyPath: any WritableKeyPath<LockdConfiguration, Double> & Sendable,
        allowZero: Bool
    ) -> ConfigurationKey {
        ConfigurationKey(section, name, keyPath, reload: true) { reader, value throws(ConfigurationError) in
            guard let seconds = try reader.seconds(value, allowZero: allowZero) else {
                throw reader.error("must be a finite number of seconds")
            }
            return seconds
        }
    }

    /// Seconds, with `nil` shown as `inf`.
    private static func seconds(_ value: Double?) -> String { value.map { "\($0)" } ?? "inf" }

    static let all: [ConfigurationKey] = [
        ConfigurationKey("socket", "path", \.socketPath, reload: false, show: { $0 ?? "(default)" }) {
            reader, value throws(ConfigurationError) in
            let path = try reader.string(value)
            guard path.hasPrefix("/") else { throw reader.error("must be an absolute path") }
            return path
        },
        ConfigurationKey("socket", "mode", \.socketMode, reload: false, show: { "0o" + String($0, radix: 8) }) {
            reader, value throws(ConfigurationError) in
            UInt32(try reader.integer(value, in: 0...0o777, hint: "a mode such as 0o660"))
        },
        finite("shutdown", "grace", \.shutdownGrace, allowZero: true),
        integer("limits", "max_line_bytes", \.limits.maxLineBytes, in: 256...(64 << 20)),
        integer("limits", "max_clients", \.limits.maxClients, in: 1...1_000_000),
        bound("limits", "default_wait", \.limits.defaultWait, allowZero: true),
        bound("limits", "max_wait", \.limits.maxWait, allowZero: true),
        bound("limits", "default_ttl", \.limits.defaultTTL, allowZero: false),
        bound("limits", "max_ttl", \.limits.maxTTL, allowZero: false),
        integer("limits", "max_pending_per_connection", \.limits.maxPendingPerConnection, in: 1...1_000_000),
        integer("limits", "max_holds_per_uid", \.limits.maxHoldsPerUID, in: 1...100_000_000),
        integer("limits", "max_waiters_per_uid", \.limits.maxWaitersPerUID, in: 1...100_000_000),
        integer("limits", "max_name_bytes", \.limits.maxNameBytes, in: 1...255),
        integer("limits", "max_output_bytes", \.limits.maxOutputBytes, in: 4096...(1 << 30)),
        finite("limits", "write_timeout", \.limits.writeTimeout, allowZero: false),
        finite("limits", "line_timeout", \.limits.lineTimeout, allowZero: false),
        ConfigurationKey("state", "directory", \.stateDirectory, reload: false, show: { $0 ?? "(default)" }) {
            reader, value throws(ConfigurationError) in
            let path = try reader.string(value)
            guard path.isEmpty || path.hasPrefix("/") else {
                throw reader.error("must be an absolute path (or \"\" to keep no state)")
            }
            return path
        },
        ConfigurationKey("access", "break", \.access.breakers, reload: true, show: \.summary) {
            reader, value throws(ConfigurationError) in
            try reader.principals(value)
        },
        ConfigurationKey(
            "access", "rule", \.access.rules, reload: true,
            show: { "[" + $0.map(\.summary).joined(separator: ", ") + "]" }
        ) {
            reader, value throws(ConfigurationError) in
            try reader.rules(value)
        },
        ConfigurationKey("cluster", "backend", \.clusterTable.backend, reload: false) {
            reader, value throws(ConfigurationError) in
            let backend = try reader.string(value)
            guard ["local", "etcd"].contains(backend) else { throw reader.error("must be \"local\" or \"etcd\"") }
            return backend
        },
        ConfigurationKey("cluster", "endpoints", \.clusterTable.endpoints, reload: false) {
            reader, value throws(ConfigurationError) in
            let urls = try reader.strings(value)
            guard urls.allSatisfy({ GatewayTransport.Endpoint(url: $0) != nil }) else {
                throw reader.error("must be etcd client URLs, [\"http://HOST:PORT\", ...]")
            }
            return urls
        },
        ConfigurationKey("cluster", "node", \.clusterTable.node, reload: false, show: { $0 ?? "(host name)" }) {
            reader, value throws(ConfigurationError) in
            let node = try reader.string(value)
            if let problem = ClusterSettings.problem(withNode: node) { throw reader.error(problem) }
            return node
        },
        ConfigurationKey("cluster", "prefix", \.clusterTable.prefix, reload: false) {
            reader, value throws(ConfigurationError) in
            let prefix = try reader.string(value)
            guard prefix.hasPrefix("/"), prefix.hasSuffix("/") else { throw reader.error("must start and end with /") }
            return prefix
        },
        ConfigurationKey("cluster", "lease_ttl", \.clusterTable.leaseTTL, reload: false) {
            reader, value throws(ConfigurationError) in
            try reader.integer(value, in: 1...3600, hint: "seconds")
        },
        ConfigurationKey("cluster", "request_timeout", \.clusterTable.requestTimeout, reload: false) {
            reader, value throws(ConfigurationError) in
            guard let seconds = try reader.seconds(value, allowZero: false) else {
                throw reader.error("must be a finite number of seconds")
            }
            return seconds
        },
        ConfigurationKey("cluster", "local_prefixes", \.clusterTable.localPrefixes, reload: false) {
            reader, value throws(ConfigurationError) in
            try reader.strings(value)
        },
        ConfigurationKey("metrics", "listen", \.metricsListen, reload: false, show: { $0?.description ?? "(off)" }) {
            reader, value throws(ConfigurationError) in
            let text = try reader.string(value)
            if text.isEmpty { return nil }
            guard let address = MetricsAddress(text) else {
                throw reader.error(
                    "must be \"\" (off), a Unix socket path, or a loopback address and port such as \"127.0.0.1:9464\"")
            }
            return address
        },
        ConfigurationKey("log", "level", \.logLevel, reload: true) { reader, value throws(ConfigurationError) in
            let name = try reader.string(value)
            guard let level = Logger.Level(rawValue: name) else {
                throw reader.error("unknown level \"\(name)\" (\(Logger.Level.allCases.map(\.rawValue)))")
            }
            return level
        },
        ConfigurationKey("log", "target", \.logTarget, reload: false) { reader, value throws(ConfigurationError) in
            let name = try reader.string(value)
            guard let target = LockdConfiguration.LogTarget(rawValue: name) else {
                throw reader.error(
                    "unknown target \"\(name)\" (\(LockdConfiguration.LogTarget.allCases.map(\.rawValue)))")
            }
            return target
        },
    ]
}

extension ConfigurationFile.Reader {
    /// An array of strings.
    func strings(_ value: any TOMLValueConvertible) throws(ConfigurationError) -> [String] {
        guard let array = value.array else { throw error("must be an array of strings") }
        var strings: [String] = []
        for index in 0..<array.count {
            guard let string = array[index].string else { throw error("must be an array of strings") }
            strings.append(string)
        }
        return strings
    }

    /// `[[access.rule]]` tables.
    mutating func rules(_ value: any TOMLValueConvertible) throws(ConfigurationError) -> [AccessPolicy.Rule] {
        guard let array = value.array else { throw error("must be [[access.rule]] tables") }
        var rules: [AccessPolicy.Rule] = []
        for index in 0..<array.count {
            guard let table = array[index].table else { throw error("must be [[access.rule]] tables") }
            var rule = AccessPolicy.Rule(locks: "")
            section = "access.rule"
            occurrence = index
            for key in table.keys {
                self.key = key
                let item = table[key]!
                switch key {
                case "locks": rule.locks = try string(item)
                case "acquire": rule.acquire = try principals(item)
                case "status": rule.status = try principals(item)
                case "break": rule.breakLock = try principals(item)
                default: throw error("unknown key (known: [\"acquire\", \"break\", \"locks\", \"status\"])")
                }
            }
            self.key = "locks"
            guard !rule.locks.isEmpty else { throw error("every rule needs a \"locks\" glob") }
            rules.append(rule)
        }
        return rules
    }
}
