#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Where lockd listens by default, shared by the daemon and its clients.
public enum SocketPath {
    /// The system daemon's socket.
    public static let system = "/run/lockd/lockd.sock"

    /// The default path for the current user: root uses ``system``; others use
    /// `$XDG_RUNTIME_DIR/lockd/lockd.sock`, or `/tmp/lockd-UID/lockd.sock` without it.
    public static func defaultPath() -> String {
        if geteuid() == 0 { return system }
        if let runtime = getenv("XDG_RUNTIME_DIR").map({ String(cString: $0) }), !runtime.isEmpty {
            return runtime + "/lockd/lockd.sock"
        }
        return "/tmp/lockd-\(geteuid())/lockd.sock"
    }

    /// The path to use: an explicit option, else `$LOCKD_SOCKET`, else ``defaultPath()``.
    public static func resolve(_ explicit: String?) -> String {
        candidates(explicit).first!
    }

    /// The paths a client tries, in order: an explicit option alone, else `$LOCKD_SOCKET` alone,
    /// else the user's own daemon's and then the system daemon's (the same path for root). A
    /// user in group `lockd` thus reaches the system lockd when it runs no lockd of its own.
    public static func candidates(_ explicit: String?) -> [String] {
        if let explicit { return [explicit] }
        if let env = getenv("LOCKD_SOCKET").map({ String(cString: $0) }), !env.isEmpty { return [env] }
        let own = defaultPath()
        return own == system ? [system] : [own, system]
    }
}
