import LockProtocol
import Testing

@Suite("timestamps")
struct TimestampTests {
    @Test("known instants")
    func known() {
        #expect(Timestamp.format(0) == "1970-01-01T00:00:00.000Z")
        #expect(Timestamp.format(1_764_088_563.123) == "2025-11-25T16:36:03.123Z")
        #expect(Timestamp.format(-1) == "1969-12-31T23:59:59.000Z")
        #expect(Timestamp.format(951_782_400) == "2000-02-29T00:00:00.000Z")
    }

    @Test(
        "any double gives an RFC 3339 time between years 0001 and 9999",
        arguments: [
            1e16, 1e19, 1e300, Double.greatestFiniteMagnitude, .infinity, -.infinity, .nan, -1e300,
            .leastNonzeroMagnitude, Timestamp.range.upperBound, Timestamp.range.lowerBound,
        ])
    func extremes(_ time: Double) {
        let text = Timestamp.format(time)
        #expect(text.count == 24, "\(text)")
        #expect(text >= "0001-01-01T00:00:00.000Z" && text <= "9999-12-31T23:59:59.999Z", "\(text)")
    }

    @Test("the ends of the range")
    func ends() {
        #expect(Timestamp.format(.infinity) == "9999-12-31T23:59:59.999Z")
        #expect(Timestamp.format(-.infinity) == "0001-01-01T00:00:00.000Z")
        #expect(Timestamp.format(.nan) == "1970-01-01T00:00:00.000Z")
    }

    @Test("parse reads back what format writes", arguments: [0, 951_782_400, 1_764_088_563.123, -1, 4_951_777_686.177])
    func roundTrip(_ time: Double) throws {
        let parsed = try #require(Timestamp.parse(Timestamp.format(time)))
        #expect(abs(parsed - (time * 1000).rounded(.down) / 1000) < 1e-6)
    }

    @Test(
        "parse refuses other text",
        arguments: ["", "2026-11-30", "2026-13-01T00:00:00.000Z", "x026-11-30T00:00:00.000Z"])
    func refuses(_ text: String) {
        #expect(Timestamp.parse(text) == nil)
    }
}
