import CoreMetrics
import LockCore

import class Prometheus.PrometheusCollectorRegistry
import struct Prometheus.PrometheusMetricsFactory

/// What operators watch, in Prometheus' text format (docs/operations.md, "Metrics"): swift-metrics
/// types on a swift-prometheus registry of this daemon's own, so no process-wide bootstrap is
/// needed and every service (tests start many) has its own.
///
/// The request path only increments counters (atomics) and records durations on the wait path;
/// the sizes (locks held, waiters, connections) are read from the table when scraped.
final class LockdMetrics {
    private let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory

    private let grants: Counter
    private let releases: Counter
    /// From an acquire's queueing to its grant.
    private let waitTime: Timer
    /// From the start of the request (or timer, or closed connection) that freed a lock to the
    /// grant of the waiter it let in, queued for sending.
    private let handOffTime: Timer
    /// One `fdatasync` of the state journal (group commit: one per event-loop turn with changes).
    private let journalSyncTime: Timer
    private let connectionsOpened: Counter
    private let revocations: [RevocationReason: Counter]
    private var errors: [LockError.Code: Counter] = [:]
    private var refusals: [LockError.Code: Counter] = [:]
    private let locksHeld: Gauge
    private let waiters: Gauge
    private let connections: Gauge

    init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        // Lock waits run from microseconds to hours; hand-offs and syncs from microseconds to
        // a slow disk's tens of milliseconds.
        factory.durationHistogramBuckets = [
            "lockd_wait_seconds": [
                .microseconds(100), .milliseconds(1), .milliseconds(10), .milliseconds(100), .seconds(1),
                .seconds(10), .seconds(60), .seconds(600), .seconds(3600),
            ],
            "lockd_handoff_seconds": [
                .microseconds(10), .microseconds(50), .microseconds(100), .microseconds(500), .milliseconds(1),
                .milliseconds(5), .milliseconds(25), .milliseconds(100),
            ],
            "lockd_journal_sync_seconds": [
                .microseconds(50), .microseconds(100), .microseconds(500), .milliseconds(1), .milliseconds(5),
                .milliseconds(25), .milliseconds(100), .seconds(1),
            ],
        ]
        self.factory = factory
        grants = Counter(label: "lockd_grants_total", factory: factory)
        releases = Counter(label: "lockd_releases_total", factory: factory)
        waitTime = Timer(label: "lockd_wait_seconds", factory: factory)
        handOffTime = Timer(label: "lockd_handoff_seconds", factory: factory)
        journalSyncTime = Timer(label: "lockd_journal_sync_seconds", factory: factory)
        connectionsOpened = Counter(label: "lockd_connections_opened_total", factory: factory)
        revocations = Dictionary(
            uniqueKeysWithValues: [RevocationReason.break, .expired, .lost].map {
                ($0, Counter(label: "lockd_revocations_total", dimensions: [("reason", $0.rawValue)], factory: factory))
            })
        locksHeld = Gauge(label: "lockd_locks_held", factory: factory)
        waiters = Gauge(label: "lockd_waiters", factory: factory)
        connections = Gauge(label: "lockd_connections", factory: factory)
    }

    func grantedAtOnce() { grants.increment() }

    /// A queued acquire granted: `handOff` nanoseconds after the change that let it in began,
    /// `wait` after it was queued.
    func grantedWaiter(handOff: UInt64, wait: UInt64?) {
        grants.increment()
        handOffTime.recordNanoseconds(Int64(clamping: handOff))
        if let wait { waitTime.recordNanoseconds(Int64(clamping: wait)) }
    }

    func released() { releases.increment() }

    func connectionOpened() { connectionsOpened.increment() }

    /// One journal sync took `nanoseconds`.
    func journalSynced(nanoseconds: UInt64) { journalSyncTime.recordNanoseconds(Int64(clamping: nanoseconds)) }

    func revoked(_ reason: RevocationReason) { revocations[reason]?.increment() }

    /// A request answered with an error, by its code.
    func failed(_ code: LockError.Code) {
        counter(&errors, "lockd_errors_total", code).increment()
    }

    /// A connection refused at once (too many clients, or lockd stopping), by the error it got.
    func refused(_ code: LockError.Code) {
        counter(&refusals, "lockd_connections_refused_total", code).increment()
    }

    private func counter(
        _ counters: inout [LockError.Code: Counter], _ label: String, _ code: LockError.Code
    ) -> Counter {
        if let counter = counters[code] { return counter }
        let counter = Counter(label: label, dimensions: [("code", code.description)], factory: factory)
        counters[code] = counter
        return counter
    }

    /// The exposition, with the sizes as they are now.
    func text(locksHeld: Int, waiters: Int, connections: Int) -> String {
        self.locksHeld.record(locksHeld)
        self.waiters.record(waiters)
        self.connections.record(connections)
        return registry.emitToString()
    }
}
