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

    /// The moment `seconds` later.
    public func adding(seconds: Double) -> Moment {
        Moment(uptimeNanos: uptimeNanos &+ Self.nanos(seconds), unixTime: unixTime + seconds)
    }

    /// Converts non-negative seconds to nanoseconds, saturating for absurdly long durations.
    public static func nanos(_ seconds: Double) -> UInt64 {
        let value = seconds * 1e9
        return value >= Double(UInt64.max / 2) ? UInt64.max / 2 : UInt64(max(0, value))
    }
}
