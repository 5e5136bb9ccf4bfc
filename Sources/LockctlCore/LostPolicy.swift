import Glibc

/// What `run` does when its hold is taken away while the command runs (`--on-lost`).
package enum LostPolicy: Equatable {
    /// Send `signal` to the command; if it still runs after `grace` seconds, send `then`.
    case signal(Int32, grace: Double, then: Int32?)
    /// Only say so on stderr.
    case warn
    /// Say nothing and exit with the command's status.
    case ignore

    package static let standard = LostPolicy.signal(SIGTERM, grace: 5, then: SIGKILL)

    /// `signal:TERM,grace:5,then:KILL` (each part optional, in that order), `warn` or `ignore`.
    package init?(argument: String) {
        switch argument {
        case "warn": self = .warn
        case "ignore": self = .ignore
        default:
            var signal = SIGTERM
            var grace = 5.0
            var then: Int32? = SIGKILL
            for part in argument.split(separator: ",") {
                let pair = part.split(separator: ":", maxSplits: 1).map(String.init)
                guard pair.count == 2 else { return nil }
                switch pair[0] {
                case "signal": guard let value = Self.signalNumber(pair[1]) else { return nil }; signal = value
                case "grace":
                    guard let value = Double(pair[1]), value >= 0, value.isFinite else { return nil }; grace = value
                case "then":
                    if pair[1] == "none" {
                        then = nil
                    } else {
                        guard let value = Self.signalNumber(pair[1]) else { return nil }
                        then = value
                    }
                default: return nil
                }
            }
            self = .signal(signal, grace: grace, then: then)
        }
    }

    private static func signalNumber(_ name: String) -> Int32? {
        let names: [String: Int32] = [
            "TERM": SIGTERM, "INT": SIGINT, "HUP": SIGHUP, "QUIT": SIGQUIT, "KILL": SIGKILL, "USR1": SIGUSR1,
            "USR2": SIGUSR2,
        ]
        let bare = name.hasPrefix("SIG") ? String(name.dropFirst(3)) : name
        return names[bare.uppercased()] ?? Int32(name).flatMap { (1...64).contains($0) ? $0 : nil }
    }
}
