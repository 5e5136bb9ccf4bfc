/// A point in time as the engine needs it: a monotonic reading for deadlines and a wall-clock
/// reading for display. The engine never reads a clock itself, so tests drive time by hand.
public struct Moment: Sendable, Hashable {
    /// Nanoseconds on a monotonic clock (the daemon uses CLOCK_MONOTONIC, as NIO's deadlines do).
    public var uptimeNanos: UInt64
    /// Seconds since the Unix epoch, UTC.
    public var unixTime: Double

    /// Creates a moment from both clock readings.
    public init(uptimeNanos: UInt64, unixTime: Double) {
        self.uptimeNanos = uptimeNanos
        self.unixTime = unixTime
    }

    /// The moment `seconds` later (clamped as ``Seconds/clamped(_:)`` clamps).
    public func adding(seconds: Double) -> Moment {
        Moment(
            uptimeNanos: Seconds.deadline(after: seconds, from: uptimeNanos),
            unixTime: unixTime + Seconds.clamped(seconds))
    }

    /// The monotonic deadline `seconds` from this moment (see ``Seconds/deadline(after:from:)``).
    public func deadline(after seconds: Double) -> UInt64 {
        Seconds.deadline(after: seconds, from: uptimeNanos)
    }
}
