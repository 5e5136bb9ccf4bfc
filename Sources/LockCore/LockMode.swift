/// How a lock is held: `shared` holders coexist, an `exclusive` holder excludes everyone else.
public enum LockMode: String, Sendable, Hashable {
    case exclusive
    case shared

    /// Whether a hold in `self` and a hold in `other` by two different owners can coexist.
    @inlinable
    public func isCompatible(with other: LockMode) -> Bool {
        self == .shared && other == .shared
    }
}
