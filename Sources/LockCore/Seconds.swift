/// Durations as lockd honours them. Every wait, lease, grace and timeout that arrives from a
/// client, the configuration or the state journal passes through here before it becomes
/// nanoseconds, a deadline or a timestamp, so that no value JSON or `Double` can carry (0, the
/// smallest subnormal, 1e300, infinity, NaN) overflows a conversion further on.
public enum Seconds {
    /// The longest duration lockd honours: 100 years of 365.25 days. Longer ones are clamped to
    /// it. In nanoseconds it is about 3.2e18, so a deadline of uptime plus the ceiling stays within
    /// `Int64` (NIO's range), and a wall-clock time plus the ceiling stays far from year 9999.
    public static let ceiling: Double = 3_155_760_000

    /// `seconds` within `0...ceiling`: negatives and NaN become 0, anything longer the ceiling.
    public static func clamped(_ seconds: Double) -> Double {
        guard seconds > 0 else { return 0 }  // also NaN
        return min(seconds, ceiling)
    }

    /// Whole nanoseconds of the clamped duration (a subnormal duration is 0).
    public static func nanoseconds(_ seconds: Double) -> UInt64 {
        UInt64(clamped(seconds) * 1e9)
    }

    /// Whole nanoseconds of the clamped duration, as NIO's `TimeAmount` counts them.
    public static func signedNanoseconds(_ seconds: Double) -> Int64 {
        Int64(clamped(seconds) * 1e9)
    }

    /// The monotonic deadline `seconds` after `uptimeNanos`, saturating at `Int64.max`, the
    /// farthest deadline NIO (and lockd) can represent.
    public static func deadline(after seconds: Double, from uptimeNanos: UInt64) -> UInt64 {
        let (sum, overflow) = uptimeNanos.addingReportingOverflow(nanoseconds(seconds))
        return overflow ? UInt64(Int64.max) : min(sum, UInt64(Int64.max))
    }
}
