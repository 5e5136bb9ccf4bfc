import Glibc
import LockCore

/// Who may do what to which locks: the `[access]` section of the configuration.
///
/// Root may do everything. For other clients the first `[[access.rule]]` whose `locks` glob
/// matches the lock name decides each action it lists; an action it does not list, or a lock no
/// rule matches, gets the default: anyone who can open the socket may acquire and see status,
/// and only the members of `access.break` may break. Releasing, renewing and claiming are not
/// rules: they stay with the uid that made the hold (or owns the token, or the process).
struct AccessPolicy: Equatable, Sendable {
    enum Action: String, Sendable {
        case acquire, status
        case breakLock = "break"
    }

    /// A set of users and groups, or everyone.
    struct Principals: Equatable, Sendable {
        var everyone = false
        var uids: Set<UInt32> = []
        var gids: Set<UInt32> = []

        static let anyone = Principals(everyone: true)

        /// For logs: `everyone`, or the uids and gids.
        var summary: String {
            if everyone { return "everyone" }
            if uids.isEmpty, gids.isEmpty { return "root only" }
            return "root, uids \(uids.sorted()), gids \(gids.sorted())"
        }

        func contains(uid: UInt32, groups: () -> Set<UInt32>) -> Bool {
            everyone || uids.contains(uid) || (!gids.isEmpty && !gids.isDisjoint(with: groups()))
        }
    }

    struct Rule: Equatable, Sendable {
        /// An fnmatch(3) glob without flags: `*` also matches `/`, so `deploy/*` covers `deploy/a/b`.
        var locks: String
        var acquire: Principals?
        var status: Principals?
        var breakLock: Principals?

        /// For logs: the glob and who may do what, e.g. `deploy/* (acquire: uids [1000])`.
        var summary: String {
            let actions = [("acquire", acquire), ("status", status), ("break", breakLock)].compactMap { name, who in
                who.map { "\(name): \($0.summary)" }
            }
            return "\(locks) (\(actions.joined(separator: "; ")))"
        }

        func principals(for action: Action) -> Principals? {
            switch action {
            case .acquire: acquire
            case .status: status
            case .breakLock: breakLock
            }
        }
    }

    var rules: [Rule] = []
    /// Who may break any lock besides root (`access.break`); nobody by default.
    var breakers = Principals()

    /// Whether a client may do `action` to `lock`. `groups` gives the client's groups (primary
    /// and supplementary) and is only asked for when a rule names a group.
    func allows(_ action: Action, lock: LockName, identity: ClientIdentity, groups: () -> Set<UInt32>) -> Bool {
        if identity.isRoot { return true }
        let rule = rules.first { fnmatch($0.locks, lock.rawValue, 0) == 0 }
        if let principals = rule?.principals(for: action) {
            return principals.contains(uid: identity.uid, groups: groups)
        }
        switch action {
        case .acquire, .status: return true
        case .breakLock: return breakers.contains(uid: identity.uid, groups: groups)
        }
    }
}
