/// SplitMix64: a small, fast, deterministic random number generator, so that a seed names one
/// run of a randomized test, the whole-service fuzzer or the stress tool, and can be replayed.
/// Not for anything that must be unpredictable.
public struct SplitMix: RandomNumberGenerator, Sendable {
    /// The generator's whole state.
    public var state: UInt64

    /// A generator whose sequence is fixed by `seed`.
    public init(seed: UInt64) { state = seed }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A number in `0..<bound` (`bound` > 0).
    public mutating func next(below bound: Int) -> Int { Int(next() % UInt64(bound)) }

    /// One of `choices` (not empty).
    public mutating func pick<Element>(_ choices: [Element]) -> Element { choices[next(below: choices.count)] }

    /// `true` with probability 1 in `odds`.
    public mutating func oneIn(_ odds: Int) -> Bool { next(below: odds) == 0 }
}
