import ArgumentParser
import Glibc
import LockCluster
import LockProtocol
import LockServer
import Logging

@main
struct Lockd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lockd",
        abstract: "Serve named locks over a Unix-domain socket.",
        discussion: """
            Protocol: one JSON object per line (docs/protocol.md). Talk to it with lockctl.
            Settings come from the configuration file (config/lockd.toml documents each key); the \
            options below override it. SIGHUP reloads the file; SIGTERM or SIGINT stops lockd gracefully.
            Exit status: 0 after a stop, 1 when it cannot serve its socket, 78 for a bad configuration.
            """,
        version: lockdVersion)

    @Option(help: "Configuration file (default: \(Daemon.defaultConfigurationFile), if it exists).")
    var config: String?

    @Option(
        help:
            "Socket path (default: $LOCKD_SOCKET, else socket.path of the file, else /run/lockd/lockd.sock for root, else $XDG_RUNTIME_DIR/lockd/lockd.sock)."
    )
    var socket: String?

    @Option(help: "Seconds to wait for open shields when stopping (shutdown.grace).")
    var shutdownGrace: Double?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical (log.level).")
    var logLevel: String?

    @Option(
        help:
            "State directory for pid and token holds (state.directory; default $STATE_DIRECTORY, else /var/lib/lockd for root, else ~/.local/state/lockd; \"\" keeps no state)."
    )
    var stateDir: String?

    @Option(help: "Where logs go: auto (the journal under systemd, else stderr), journal, stderr (log.target).")
    var log: String?

    @Option(
        help:
            "local: this host's locks only; etcd: share locks with other nodes (docs/cluster.md) (cluster.backend; default local)."
    )
    var backend: String?

    @Option(help: "etcd members' client URLs, comma-separated (http://HOST:PORT,...), with --backend etcd.")
    var etcdEndpoints: String?

    @Option(help: "This node's name in the cluster (default: the host name), with --backend etcd.")
    var node: String?

    @Option(help: "The key prefix of this cluster's locks in etcd (default: /lockd/).")
    var clusterPrefix: String?

    @Option(help: "Seconds this node's holds outlive it or its link to etcd (its etcd lease; default 5).")
    var leaseTTL: Int?

    /// The cluster settings of the command line, or `nil` for a single host.
    private func clusterSettings() throws -> ClusterSettings? {
        switch backend ?? (etcdEndpoints == nil ? "local" : "etcd") {
        case "local":
            guard etcdEndpoints == nil, node == nil, clusterPrefix == nil, leaseTTL == nil else {
                throw ValidationError(
                    "--etcd-endpoints, --node, --cluster-prefix and --lease-ttl go with --backend etcd")
            }
            return nil
        case "etcd":
            let urls = (etcdEndpoints ?? "").split(separator: ",").map(String.init)
            let endpoints = urls.compactMap(GatewayTransport.Endpoint.init(url:))
            guard !urls.isEmpty, endpoints.count == urls.count else {
                throw ValidationError("--backend etcd needs --etcd-endpoints http://HOST:PORT[,...]")
            }
            let name = node ?? ClusterSettings.hostName
            if let problem = ClusterSettings.problem(withNode: name) { throw ValidationError("--node: \(problem)") }
            var settings = ClusterSettings(endpoints: endpoints, node: name)
            if let clusterPrefix {
                guard clusterPrefix.hasPrefix("/"), clusterPrefix.hasSuffix("/") else {
                    throw ValidationError("--cluster-prefix starts and ends with /, like /lockd/")
                }
                settings.prefix = clusterPrefix
            }
            if let leaseTTL {
                guard (1...3600).contains(leaseTTL) else { throw ValidationError("--lease-ttl is 1-3600 seconds") }
                settings.leaseTTL = leaseTTL
            }
            return settings
        default:
            throw ValidationError("unknown --backend \(backend ?? "") (local, etcd)")
        }
    }

    func validate() throws {
        if let shutdownGrace, !(shutdownGrace >= 0 && shutdownGrace.isFinite) {
            throw ValidationError("--shutdown-grace must be a number of seconds >= 0")
        }
        if let logLevel, Logger.Level(rawValue: logLevel) == nil {
            throw ValidationError("unknown --log-level \(logLevel)")
        }
        if let log, !Daemon.logTargets.contains(log) {
            throw ValidationError("unknown --log \(log) (auto, journal, stderr)")
        }
        _ = try clusterSettings()
    }

    func run() async throws {
        var options = DaemonOptions(
            configurationFile: config, socket: socket, shutdownGrace: shutdownGrace,
            logLevel: logLevel.flatMap(Logger.Level.init(rawValue:)), stateDirectory: stateDir, logTarget: log)
        options.cluster = try clusterSettings()
        // An explicit --backend local keeps this lockd off a cluster its file names.
        options.localOnly = backend == "local"
        let status = try await Daemon.run(options)
        if status != 0 { throw ExitCode(status) }
    }
}
