import Glibc
import LockCore
import LockProtocol
import NIOEmbedded
import Testing

@testable import LockServer

@Suite("journal replay of torn and hostile records")
struct JournalReplayTests {
    /// A good token hold, as lockd writes it, with one member replaced.
    static func hold(_ replacing: (key: String, value: String)? = nil, owner: String = "{\"token\":\"t\"}") -> String {
        var members: [(String, String)] = [
            ("owner", owner), ("mode", "\"exclusive\""), ("count", "1"), ("fence", "5"), ("since", "1796000000.5"),
            ("shield", "0"), ("revoke", "null"), ("pid", "42"), ("uid", "1000"), ("gid", "1000"),
            ("lease", "{\"ttl\":30,\"expires\":1796000030,\"uid\":1000}"),
        ]
        if let replacing, let index = members.firstIndex(where: { $0.0 == replacing.key }) {
            members[index].1 = replacing.value
        }
        return "{" + members.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
    }

    static func record(_ lock: String, _ holds: [String]) throws -> JSONValue {
        try JSONValue.parse(Array("{\"lock\":\"\(lock)\",\"holds\":[\(holds.joined(separator: ","))]}".utf8))
    }

    @Test("a good hold reads back")
    func good() throws {
        let (holds, unusable) = StateRecords.holds(of: try Self.record("a", [Self.hold()]))
        #expect(holds.count == 1 && unusable == 0)
        #expect(holds.first?.hold.lease?.ttl == 30)
    }

    @Test(
        "a hold with a number lockd cannot honour, or a malformed one, is dropped",
        arguments: [
            ("count", "9223372036854775807"), ("count", "0"), ("count", "-1"), ("count", "2147483648"),
            ("fence", "9007199254740992"), ("fence", "0"), ("fence", "1e300"), ("since", "null"),
            ("shield", "2147483648"), ("pid", "2147483648"), ("uid", "4294967296"), ("gid", "-5"),
            ("mode", "\"both\""), ("lease", "{\"ttl\":-1,\"uid\":1000}"), ("lease", "{\"ttl\":0,\"uid\":1000}"),
            ("lease", "{\"ttl\":30,\"expires\":\"soon\",\"uid\":1000}"), ("lease", "null"),
            ("owner", "{\"token\":\"bad\\u0007\"}"), ("owner", "{\"pid\":0}"), ("owner", "{\"session\":3}"),
        ])
    func hostile(_ key: String, _ value: String) throws {
        let (holds, unusable) = StateRecords.holds(of: try Self.record("a", [Self.hold((key, value))]))
        #expect(holds.isEmpty, "\(key) = \(value) was accepted")
        #expect(unusable == 1)
    }

    @Test("a lease longer than the ceiling is clamped to it")
    func clampedLease() throws {
        let (holds, _) = StateRecords.holds(
            of: try Self.record("a", [Self.hold(("lease", "{\"ttl\":1e300,\"expires\":1e300,\"uid\":1000}"))]))
        #expect(holds.first?.hold.lease?.ttl == Seconds.ceiling)
    }

    @Test("a damaged journal restores what it can: no trap, no second exclusive holder, fences in range")
    func restore() throws {
        let directory = "/tmp/lockd-replay-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { _ = try? StateJournal.open(directory: directory).0.compact(to: []) }
        do {
            let (journal, _) = try StateJournal.open(directory: directory)
            journal.append(try JSONValue.parse(Array("{\"fence\":9223372036854775807}".utf8)))
            journal.append(try JSONValue.parse(Array("{\"fence\":100}".utf8)))
            journal.append(try Self.record("a", [Self.hold(), Self.hold(owner: "{\"token\":\"u\"}")]))
            journal.append(try Self.record("b", [Self.hold(("count", "9223372036854775807"))]))
            journal.append(
                try Self.record("c", [Self.hold(("lease", "{\"ttl\":1e300,\"expires\":1e300,\"uid\":1000}"))]))
            try journal.sync()
        }
        let (journal, contents) = try StateJournal.open(directory: directory)
        #expect(contents.fence == 100)
        #expect(contents.unusableRecords == 1)
        let harness = ServiceHarness()
        try harness.service.restore(from: contents, journal: journal)
        let table = harness.service.inspectTable { $0 }
        #expect(table.invariantViolations().isEmpty)
        #expect(table.status(of: LockName("a")!).first?.holders.count == 1, "the second exclusive holder is dropped")
        #expect(table.status(of: LockName("b")!).isEmpty)
        #expect(table.currentFence >= 100)
        let status = Response.locks(table.status(), commandLine: { _ in nil }).serialized
        #expect(status.contains("\"expires\":\"21"), "the century-long lease shows: \(status)")
    }
}
