import CSystemd
import Glibc
import NIOCore
import SystemPackage

/// Tells the service manager how lockd is doing (sd_notify). Without `$NOTIFY_SOCKET` every
/// call is a cheap no-op, so lockd runs the same way by hand.
struct SystemdNotifier: Sendable {
    /// Whether a service manager listens (`$NOTIFY_SOCKET` is set).
    let isEnabled: Bool
    /// Half of `$WATCHDOG_USEC` (systemd's advice), when the watchdog is on for this process.
    let watchdogInterval: TimeAmount?

    init() {
        isEnabled = getenv("NOTIFY_SOCKET") != nil
        var usec: UInt64 = 0
        watchdogInterval = sd_watchdog_enabled(0, &usec) > 0 && usec > 0 ? .microseconds(Int64(usec / 2)) : nil
    }

    /// Sends newline-separated `KEY=value` assignments, e.g. `READY=1\nSTATUS=serving`.
    func send(_ state: String) {
        guard isEnabled else { return }
        _ = sd_notify(0, state)
    }

    func ready(status: String) { send("READY=1\nSTATUS=\(status)\nMAINPID=\(getpid())") }
    func status(_ text: String) { send("STATUS=\(text)") }
    func watchdog() { send("WATCHDOG=1") }
    func stopping(status: String) { send("STOPPING=1\nSTATUS=\(status)") }

    /// Frames a configuration reload; systemd ≥ 253 (`Type=notify-reload`) wants the monotonic
    /// time with RELOADING=1, older ones ignore it.
    func reloading() {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        send("RELOADING=1\nMONOTONIC_USEC=\(Int64(now.tv_sec) * 1_000_000 + Int64(now.tv_nsec) / 1000)")
    }
}

/// The listening socket systemd passed (sd_listen_fds), if lockd was socket-activated.
enum SocketActivation {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// The inherited listening Unix stream socket, or `nil` when lockd was not socket-activated.
    /// Clears `$LISTEN_FDS` so children do not believe the socket is theirs.
    static func inheritedSocket() throws(Failure) -> CInt? {
        let count = sd_listen_fds(1)
        if count < 0 { throw Failure(description: "sd_listen_fds: \(Errno(rawValue: -count))") }
        if count == 0 { return nil }
        guard count == 1 else {
            throw Failure(description: "systemd passed \(count) sockets; lockd serves exactly one (one ListenStream=)")
        }
        let fd = SD_LISTEN_FDS_START
        guard sd_is_socket_unix(fd, Int32(SOCK_STREAM.rawValue), 1, nil, 0) > 0 else {
            throw Failure(description: "the socket systemd passed is not a listening Unix stream socket")
        }
        return fd
    }

    /// The path a Unix socket is bound to (for logs), or a placeholder for an unnamed one.
    static func boundPath(of fd: CInt) -> String {
        var address = sockaddr_un()
        var length = socklen_t(MemoryLayout<sockaddr_un>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) == 0 }
        }
        guard named, length > MemoryLayout<sa_family_t>.size else { return "(unnamed socket)" }
        return withUnsafeBytes(of: address.sun_path) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }
}
