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
        if let explicit, !explicit.isEmpty { return explicit }
        if let env = getenv("LOCKD_SOCKET").map({ String(cString: $0) }), !env.isEmpty { return env }
        return defaultPath()
    }
}
