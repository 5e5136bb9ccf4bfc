import Foundation
import Testing

@Suite("safety checker", .serialized)
struct StressTests {
    static var stress: String { Binaries.directory + "/lockd-stress" }

    @Test("a short stress run with client kills and lockd crashes finds no violation")
    func shortRun() throws {
        let run = try execute(
            Self.stress, ["--clients", "6", "--seconds", "4", "--kill-every", "0.4", "--restart-every", "1.2"],
            timeout: 60)
        #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
        let counts = Dictionary(
            uniqueKeysWithValues: run.stdout.split(separator: "\n").compactMap { line -> (String, Int)? in
                let parts = line.split(separator: ":", maxSplits: 1)
                guard parts.count == 2, let value = Int(parts[1].trimmingCharacters(in: .whitespaces)) else {
                    return nil
                }
                return (String(parts[0]), value)
            })
        #expect((counts["operations"] ?? 0) > 300, "\(run.stdout)")
        #expect((counts["grants"] ?? 0) > 100, "\(run.stdout)")
        #expect((counts["client kills"] ?? 0) >= 2, "\(run.stdout)")
        #expect((counts["lockd restarts"] ?? 0) >= 1, "\(run.stdout)")
        #expect(counts["violations"] == 0, "\(run.stdout)")
    }

    @Test("the checker reports two exclusive holders, a fence going back and a lost durable hold")
    func checkerFinds() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // Worker 0 holds "x" (fence 5) until 2.0; worker 1 is granted "x" at 1.5 with fence 4.
        let worker0 = [
            "1.0\tacq_sent\tx\t0\tpid:10\t2.0", "1.1\tgrant\tx\t5\tpid:10\t-", "2.0\trel_sent\tx\t5\tpid:10\t-",
            "2.1\trel_ok\tx\t5\tpid:10\t-",
            "3.0\tacq_sent\ty\t0\ttoken:w0\t2.0", "3.1\tgrant\ty\t9\ttoken:w0\t-", "3.5\trel_sent\ty\t9\ttoken:w0\t-",
            "3.6\trel_err\ty\t9\ttoken:w0\tnot_held",
        ]
        let worker1 = ["1.4\tacq_sent\tx\t0\tsession\t2.0", "1.5\tgrant\tx\t4\tsession\t-"]
        try (worker0.joined(separator: "\n") + "\n").write(
            toFile: directory + "/worker-0.log", atomically: true, encoding: .utf8)
        try (worker1.joined(separator: "\n") + "\n").write(
            toFile: directory + "/worker-1.log", atomically: true, encoding: .utf8)
        let check = try execute(Self.stress, ["check", directory])
        #expect(check.status == 1)
        #expect(check.stdout.contains("violations: 3"), "\(check.stdout)")
        #expect(check.stdout.contains("two exclusive holders of x"), "\(check.stdout)")
        #expect(check.stdout.contains("fence went back on x"), "\(check.stdout)")
        #expect(check.stdout.contains("hold lost: y fence 9"), "\(check.stdout)")

        // The same logs with a break of y before the release explain the lost hold.
        try "3.3\tbreak_sent\ty\t0\t-\t-\n3.4\tbreak_ack\ty\t0\t-\t1/0\n".write(
            toFile: directory + "/worker-2.log", atomically: true, encoding: .utf8)
        #expect(try execute(Self.stress, ["check", directory]).stdout.contains("violations: 2"))
    }

    @Test("a grant read late, after a break and after the next grant was read, is no violation")
    func lateRead() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // lockd grants x to worker 0 (fence 4), a break takes it away, worker 1 gets fence 5 and
        // reads it at 1.5; worker 0 only reads its (already broken) grant at 1.8.
        let logs = [
            ["1.0\tacq_sent\tx\t0\tpid:10\t2.0", "1.8\tgrant\tx\t4\tpid:10\t-"],
            [
                "1.1\tacq_sent\tx\t0\tsession\t2.0", "1.5\tgrant\tx\t5\tsession\t-", "2.5\trel_sent\tx\t5\tsession\t-",
                "2.6\trel_ok\tx\t5\tsession\t-",
            ],
            ["1.2\tbreak_sent\tx\t0\t-\t-", "1.3\tbreak_ack\tx\t0\t-\t1/0"],
        ]
        for (index, log) in logs.enumerated() {
            try (log.joined(separator: "\n") + "\n").write(
                toFile: directory + "/worker-\(index).log", atomically: true, encoding: .utf8)
        }
        let check = try execute(Self.stress, ["check", directory])
        #expect(check.stdout.contains("violations: 0"), "\(check.stdout)")

        // Without the break, worker 0's hold was still there when worker 1 read fence 5.
        try "".write(toFile: directory + "/worker-2.log", atomically: true, encoding: .utf8)
        #expect(try execute(Self.stress, ["check", directory]).stdout.contains("two exclusive holders of x"))
    }
}
