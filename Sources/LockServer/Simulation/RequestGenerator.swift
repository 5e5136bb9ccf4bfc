import LockCore

/// Writes the request lines the whole-service fuzzer sends: every op, every owner kind, numbers
/// at their edges, and lines that are no request at all. Lines are built as text so that values
/// no encoder would write (`1e400`, `-0`, a member named twice) reach the decoder too.
struct RequestGenerator {
    static let locks = ["a", "b", "c", "d/e", "d/f"]
    static let tokens = ["t1", "t2", "t3"]
    /// Durations as JSON text: ordinary ones most of the time, then every edge.
    static let ordinarySeconds = ["0", "0.01", "0.2", "1", "2", "30"]
    static let extremeSeconds = [
        "5e-324", "1e-9", "0.001", "3600", "1e9", "3155760000", "3155760001", "1e16", "1e18", "9.3e18", "1e300",
        "1.7976931348623157e308", "1e400", "-1", "-0", "\"5\"", "null", "true", "[]", "{}",
    ]

    var random: SplitMix

    mutating func seconds() -> String {
        random.oneIn(4) ? random.pick(Self.extremeSeconds) : random.pick(Self.ordinarySeconds)
    }

    mutating func lock() -> String {
        if random.oneIn(40) {
            return random.pick(["\"\"", "\"bad name\"", "\"" + String(repeating: "n", count: 300) + "\"", "7", "null"])
        }
        // Most requests go to few locks, so that queues form.
        let index = min(random.next(below: 8), random.next(below: 8), Self.locks.count - 1)
        return "\"\(Self.locks[index])\""
    }

    /// An owner member (with its comma), or nothing for the session default.
    mutating func owner(pids: [Int32]) -> String {
        switch random.next(below: 20) {
        case 0...9: return ""
        case 10: return ",\"owner\":\"session\""
        case 11...14:
            let pid = random.oneIn(8) ? random.pick(["0", "-1", "2147483648", "1.5", "\"1\""]) : "\(random.pick(pids))"
            return ",\"owner\":{\"pid\":\(pid)}"
        case 15, 16: return ",\"owner\":{\"token\":\"\(random.pick(Self.tokens))\"}"
        case 17, 18:
            return ",\"owner\":{\"token\":\"\(random.pick(Self.tokens))\",\"ttl\":\(seconds())}"
        default:
            return random.pick([",\"owner\":{}", ",\"owner\":{\"token\":\"\"}", ",\"owner\":{\"token\":\"a\\u0001\"}"])
        }
    }

    /// A lock and owner (as member text) for a release or shield: mostly one the client holds.
    mutating func heldOrAny(_ held: [Hold], pids: [Int32]) -> Hold {
        if !held.isEmpty, !random.oneIn(4) { return random.pick(held) }
        return Hold(lock: lock(), owner: owner(pids: pids))
    }

    /// A lock (JSON text) and an owner member (text with its comma) as an acquire named them.
    struct Hold: Equatable {
        var lock: String
        var owner: String
    }

    /// One request line (without its newline) for a client with the given id counter, and the
    /// lock and owner it names when it is an acquire or a release.
    mutating func line(id: String, pending: [String], pids: [Int32], held: [Hold]) -> (String, Hold?) {
        let idMember = "\"id\":\(id)"
        switch random.next(below: 100) {
        case 0..<38:
            let hold = Hold(lock: lock(), owner: owner(pids: pids))
            var line = "{\(idMember),\"op\":\"acquire\",\"lock\":\(hold.lock)\(hold.owner)"
            if random.oneIn(3) {
                let mode =
                    random.oneIn(10)
                    ? random.pick(["\"both\"", "null", "1"]) : random.pick(["\"shared\"", "\"exclusive\""])
                line += ",\"mode\":\(mode)"
            }
            switch random.next(below: 5) {
            case 0, 1: break
            case 2: line += ",\"wait\":0"
            default: line += ",\"wait\":\(seconds())"
            }
            return (line + "}", hold)
        case 38..<58:
            let all = random.oneIn(4) ? ",\"all\":\(random.oneIn(10) ? "1" : random.pick(["true", "false"]))" : ""
            let hold = heldOrAny(held, pids: pids)
            return ("{\(idMember),\"op\":\"release\",\"lock\":\(hold.lock)\(hold.owner)\(all)}", hold)
        case 58..<66:
            let on = random.oneIn(20) ? "\"yes\"" : (random.oneIn(2) ? "true" : "false")
            let hold = heldOrAny(held, pids: pids)
            return ("{\(idMember),\"op\":\"shield\",\"lock\":\(hold.lock)\(hold.owner),\"on\":\(on)}", nil)
        case 66..<72:
            return (
                "{\(idMember),\"op\":\"renew\",\"token\":\"\(random.pick(Self.tokens))\",\"ttl\":\(seconds())}", nil
            )
        case 72..<76:
            return ("{\(idMember),\"op\":\"break\",\"lock\":\(lock())}", nil)
        case 76..<81:
            let lock = random.oneIn(2) ? "" : ",\"lock\":\(lock())"
            return ("{\(idMember),\"op\":\"status\"\(lock)}", nil)
        case 81..<87:
            let target = pending.isEmpty || random.oneIn(4) ? "\(random.next(below: 50))" : random.pick(pending)
            return ("{\(idMember),\"op\":\"cancel\",\"request\":\(target)}", nil)
        case 87..<90:
            if random.oneIn(3) {
                let lock = random.oneIn(2) ? "" : ",\"lock\":\(lock())"
                return ("{\(idMember),\"op\":\"watch\"\(lock)}", nil)
            }
            return ("{\(idMember),\"op\":\"\(random.pick(["hello", "ping"]))\"}", nil)
        default:
            let garbage = random.pick([
                "", "not json", "[1,2]", "{\"op\":\"ping\"}", "{\(idMember)}", "{\(idMember),\"op\":\"fly\"}",
                "{\(idMember),\"op\":\"ping\",\"op\":\"ping\"}", "{\(idMember),\"op\":\"ping\",}",
                "{\"id\":null,\"op\":\"ping\"}", "{\"id\":1e400,\"op\":\"ping\"}", "{\"id\":[],\"op\":\"ping\"}",
                String(repeating: "[", count: 600), "{\(idMember),\"op\":\"ping\",\"x\":\"\\ud800\"}",
                "{\(idMember),\"op\":\"acquire\",\"lock\":\"a\",\"wait\":1e400}",
                "{\(idMember),\"op\":\"ping\",\"pad\":\"" + String(repeating: "p", count: 400) + "\"}",
            ])
            return (garbage, nil)
        }
    }
}
