import Glibc
import LockCluster
import Logging

/// Everything lockd reads from its configuration file, with the built-in defaults.
///
/// `config/lockd.toml` documents each key; `docs/configuration.md` says which ones a reload
/// (SIGHUP) changes at run time.
struct LockdConfiguration: Equatable, Sendable {
    /// The cluster this node joins (`--backend etcd`, or `[cluster]` with `backend = "etcd"`),
    /// or `nil` for a single host's lockd.
    var cluster: ClusterSettings?
    /// The `[cluster]` table as written; ``ConfigurationFile`` makes ``cluster`` from it.
    var clusterTable = ClusterTable()

    /// The `[cluster]` table's keys, with their defaults.
    struct ClusterTable: Equatable, Sendable {
        var backend = "local"
        var endpoints: [String] = []
        var node: String?
        var prefix = "/lockd/"
        var leaseTTL = 5
        var requestTimeout: Double = 1
        var localPrefixes = ["local/"]

        /// The settings of `backend = "etcd"`, `nil` for `"local"`; the error says which key is wrong.
        func settings() throws(ConfigurationTableError) -> ClusterSettings? {
            guard backend == "etcd" else { return nil }
            let parsed = endpoints.compactMap(GatewayTransport.Endpoint.init(url:))
            guard !endpoints.isEmpty, parsed.count == endpoints.count else {
                throw ConfigurationTableError(key: "endpoints", "backend \"etcd\" needs [\"http://HOST:PORT\", ...]")
            }
            let name = node ?? ClusterSettings.hostName
            if let problem = ClusterSettings.problem(withNode: name) {
                throw ConfigurationTableError(key: "node", problem)
            }
            var settings = ClusterSettings(endpoints: parsed, node: name)
            settings.prefix = prefix
            settings.leaseTTL = leaseTTL
            settings.requestTimeout = requestTimeout
            settings.localPrefixes = localPrefixes
            return settings
        }
    }

    /// A `[cluster]` value that is fine alone but not with the others.
    struct ConfigurationTableError: Error {
        var key: String
        var message: String
        init(key: String, _ message: String) {
            self.key = key
            self.message = message
        }
    }
    /// Where lockd reads its configuration when `--config` is not given.
    static let defaultFile = "/etc/lockd/lockd.toml"

    /// The socket to bind when not socket-activated; `nil` is the per-user default.
    var socketPath: String?
    /// The mode of a socket lockd binds itself (socket activation leaves it to the unit).
    var socketMode: UInt32 = 0o666
    /// Seconds a stop waits for open shields before it exits (session holds end; pid and token
    /// holds stay in the journal for the next start).
    var shutdownGrace: Double = 30
    var limits = Limits()
    var access = AccessPolicy()
    /// Where the state journal lives; `nil` is the default (``defaultStateDirectory()``), `""`
    /// turns persistence off.
    var stateDirectory: String?
    var logLevel: Logger.Level = .info
    var logTarget: LogTarget = .auto
    /// Where to serve the metrics over HTTP (`[metrics] listen`); `nil`: not served (they are
    /// still answered by the `metrics` op, `lockctl metrics`).
    var metricsListen: MetricsAddress?

    /// The settings a reload may change while clients stay connected.
    struct Limits: Equatable, Sendable {
        /// Longest request line in bytes; a longer one is answered `too_large` and the client dropped.
        var maxLineBytes = 65536
        /// Open connections; one more gets a `limit` error line and is closed.
        var maxClients = 4096
        /// The wait of an acquire that names none; `nil` waits until granted.
        var defaultWait: Double?
        /// Longer waits are shortened to this; `nil` for no bound.
        var maxWait: Double?
        /// The lease of a token acquire that names no ttl; `nil` makes `ttl` required.
        var defaultTTL: Double?
        /// Longer leases (acquire and renew) are shortened to this; `nil` for no bound.
        var maxTTL: Double?
        /// Acquires one connection may have waiting at once.
        var maxPendingPerConnection = 1024
        /// Holds that clients of one uid may have (root is exempt).
        var maxHoldsPerUID = 65536
        /// Waiting acquires that clients of one uid may have (root is exempt).
        var maxWaitersPerUID = 4096
        /// Longest lock name in bytes (the protocol allows 255).
        var maxNameBytes = 255
        /// Answers buffered for a client that does not read them; above this lockd stops reading
        /// that client's requests, and drops it when it stays so for `writeTimeout`.
        var maxOutputBytes = 1 << 20
        var writeTimeout: Double = 10
        /// Seconds a request line may stay incomplete (slowloris) before the client is dropped.
        var lineTimeout: Double = 10

        /// The wait an acquire gets once the defaults and bounds are applied.
        func effectiveWait(_ requested: Double?) -> Double? {
            bounded(requested ?? defaultWait, by: maxWait)
        }

        /// The lease a token gets once the defaults and bounds are applied.
        func effectiveTTL(_ requested: Double?) -> Double? {
            bounded(requested ?? defaultTTL, by: maxTTL)
        }

        private func bounded(_ value: Double?, by bound: Double?) -> Double? {
            guard let bound else { return value }
            return min(value ?? bound, bound)
        }
    }

    /// `$STATE_DIRECTORY` (systemd's StateDirectory=), else /var/lib/lockd for root, else
    /// `$XDG_STATE_HOME/lockd` or `~/.local/state/lockd`.
    static func defaultStateDirectory() -> String {
        func environment(_ name: String) -> String? {
            getenv(name).map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 }
        }
        if let systemd = environment("STATE_DIRECTORY") {
            return String(systemd.split(separator: ":").first ?? Substring(systemd))
        }
        if geteuid() == 0 { return "/var/lib/lockd" }
        if let state = environment("XDG_STATE_HOME") { return state + "/lockd" }
        return (environment("HOME") ?? "/tmp/lockd-\(geteuid())") + "/.local/state/lockd"
    }

    /// Where log records go.
    enum LogTarget: String, Equatable, Sendable, CaseIterable {
        /// The journal when stderr is connected to it (`$JOURNAL_STREAM`), else stderr.
        case auto
        case journal
        case stderr
    }
}
