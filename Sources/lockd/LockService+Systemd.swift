import LockCore
import Logging
import NIOCore

extension LockService {
    /// The one-line summary systemd shows (`systemctl status lockd`).
    var statusSummary: String {
        let clients = sessions.count
        let held = table.heldLockCount
        let waiters = table.waiterCount
        return "serving \(clients) client\(clients == 1 ? "" : "s"), \(held) lock\(held == 1 ? "" : "s") held, "
            + "\(waiters) waiter\(waiters == 1 ? "" : "s")"
    }

    /// Notes that the summary may have changed. Updates are coalesced to at most one datagram per
    /// 100 ms, so a busy lockd does not pay a sendmsg per request.
    func stateChanged() {
        guard notifier.isEnabled, !statusUpdatePending, !isShuttingDown else { return }
        statusUpdatePending = true
        let bound = self.bound
        loop.scheduleTask(in: .milliseconds(100)) { bound.value.reportStatus() }
    }

    private func reportStatus() {
        statusUpdatePending = false
        guard !isShuttingDown else { return }
        let summary = statusSummary
        guard summary != reportedStatus else { return }
        reportedStatus = summary
        notifier.status(summary)
    }

    /// Says READY=1 and starts the watchdog pings. They come from the event loop itself, so a
    /// stuck loop stops them and systemd restarts lockd.
    func announceReady() {
        reportedStatus = statusSummary
        notifier.ready(status: reportedStatus)
        guard let interval = notifier.watchdogInterval else { return }
        let notifier = self.notifier
        notifier.watchdog()
        watchdogTask = loop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in notifier.watchdog() }
        logger.info("watchdog on", metadata: ["interval_ms": "\(interval.nanoseconds / 1_000_000)"])
    }

    /// Takes a reloaded configuration: limits, waits, leases and the grace apply from the next
    /// request (the line limit from the next line); the socket needs a restart.
    func apply(_ new: LockdConfiguration) {
        configuration.limits = new.limits
        configuration.access = new.access
        configuration.shutdownGrace = new.shutdownGrace
        configuration.logLevel = new.logLevel
        stateChanged()
    }
}
