import Logging
import NIOCore

/// Tells systemd how lockd is doing: READY with a one-line summary, STATUS updates, the
/// watchdog and STOPPING. Confined to the service's event loop.
final class StatusReporter {
    private let loop: any EventLoop
    let notifier: SystemdNotifier
    private let logger: Logger
    /// Computes the summary when an update goes out (set by the service).
    var summary: () -> String = { "" }
    private var reported = ""
    private var updateScheduled = false
    private var stopped = false
    private var watchdog: RepeatedTask?

    init(loop: any EventLoop, notifier: SystemdNotifier, logger: Logger) {
        self.loop = loop
        self.notifier = notifier
        self.logger = logger
    }

    /// Says READY=1 and starts the watchdog pings. They come from the event loop itself, so a
    /// stuck loop stops them and systemd restarts lockd.
    func ready() {
        reported = summary()
        notifier.ready(status: reported)
        guard let interval = notifier.watchdogInterval else { return }
        let notifier = self.notifier
        notifier.watchdog()
        watchdog = loop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in notifier.watchdog() }
        logger.info("watchdog on", metadata: ["interval_ms": "\(interval.nanoseconds / 1_000_000)"])
    }

    /// Notes that the summary may have changed. Updates are coalesced to at most one datagram per
    /// 100 ms, so a busy lockd does not pay a sendmsg per request.
    func changed() {
        guard notifier.isEnabled, !updateScheduled, !stopped else { return }
        updateScheduled = true
        loop.assumeIsolated().scheduleTask(in: .milliseconds(100)) { [weak self] in self?.report() }
    }

    private func report() {
        updateScheduled = false
        guard !stopped else { return }
        let text = summary()
        guard text != reported else { return }
        reported = text
        notifier.status(text)
    }

    /// Says STOPPING=1 with `status`; no more updates follow.
    func stopping(_ status: String) {
        stopped = true
        notifier.stopping(status: status)
    }

    /// Stops the watchdog pings (the service is finished).
    func finish() {
        stopped = true
        watchdog?.cancel()
    }
}
