import ArgumentParser
import Foundation
import Testing

@testable import LockctlCore
@testable import lockctl_full

/// lockctl's quick reader must agree with argument-parser on every command line it accepts, and
/// leave everything unusual or invalid to argument-parser.
@Suite struct QuickParseTests {
    static let plain: [[String]] = [
        ["acquire", "x"],
        ["acquire", "db.migrate", "--shared", "--wait", "5", "--json"],
        ["acquire", "x", "--wait=inf"],
        ["acquire", "x", "--no-wait", "--conflict-exit-code", "9"],
        ["acquire", "x", "--token", "t1", "--ttl", "30"],
        ["acquire", "x", "--token", "t1", "--ttl=inf"],
        ["acquire", "x", "--pid", "1234", "--socket", "/tmp/s"],
        ["acquire", "x", "--owner", "session-leader", "--daemon-timeout=2"],
        ["--socket", "/tmp/s", "acquire", "x"],
        ["--socket=/tmp/s", "--daemon-timeout", "inf", "release", "x", "--all"],
        ["release", "x", "--token", "t1", "--json"],
        ["run", "x", "--", "/bin/true"],
        ["run", "x", "--shield", "--shared", "--wait", "0.5", "--", "sh", "-c", "echo --json"],
        ["run", "--close", "x", "--", "cmd", "--", "x"],
        ["status"],
        ["status", "x", "--check"],
        ["status", "--json", "--since", "--socket", "/tmp/s"],
    ]

    static let unusual: [[String]] = [
        [], ["--help"], ["-h"], ["help"], ["acquire"], ["acquire", "-h"], ["acquire", "x", "--help"],
        ["acquire", "x", "y"], ["acquire", "x", "--wait"], ["acquire", "x", "--shared", "--shared"],
        ["acquire", "x", "--socket", "-s"], ["acquire", "x", "--pid", "abc"], ["acquire", "x", "--owner", "me"],
        ["acquire", "x", "--frobnicate"], ["acquire", "--", "x"], ["acquire", "-x"], ["run", "x"],
        ["run", "x", "--"], ["run", "x", "--on-lost", "warn", "--", "true"], ["run", "x", "-o", "--", "true"],
        ["status", "x", "y"], ["flock", "/tmp/f", "true"], ["break", "x"], ["--version", "x"],
        ["--socket", "/s", "--version"], ["acquire", "x", "--socket", "/a", "--socket", "/b"],
        // Refused by argument-parser's validation: it must say why.
        ["acquire", "x", "--wait", "soon"], ["acquire", "x", "--wait", "-1"],
        ["acquire", "x", "--wait", "1", "--no-wait"],
        ["acquire", "x", "--ttl", "5"], ["acquire", "x", "--token", "t", "--ttl", "0"],
        ["acquire", "x", "--pid", "1", "--token", "t"], ["acquire", "x", "--conflict-exit-code", "0"],
        ["status", "--check"], ["release", "x", "--socket="], ["status", "--daemon-timeout", "never"],
    ]

    /// What argument-parser's reading runs, or nil when it refuses the line.
    private func argumentParser(_ arguments: [String]) -> (any Invocation)? {
        guard let command = try? LockCtl.parseAsRoot(arguments) else { return nil }
        switch command {
        case let acquire as Acquire: return acquire.invocation
        case let release as Release: return release.invocation
        case let run as Run: return run.invocation
        case let status as Status: return status.invocation
        default:
            Issue.record("argument-parser read \(arguments) as \(command)")
            return nil
        }
    }

    private func same(_ quick: any Invocation, _ parsed: (any Invocation)?) -> Bool {
        func equal<T: Invocation>(_ value: T) -> Bool { (parsed as? T) == value }
        return equal(quick)
    }

    @Test(arguments: plain) func plainLinesReadAsArgumentParserReadsThem(_ arguments: [String]) throws {
        let quick = try #require(QuickParse.invocation(arguments), "the quick reader declined \(arguments)")
        #expect(same(quick, argumentParser(arguments)), "\(arguments)")
    }

    @Test func version() {
        #expect(QuickParse.invocation(["--version"]) is VersionInvocation)
    }

    @Test(arguments: unusual) func unusualLinesGoToArgumentParser(_ arguments: [String]) {
        #expect(QuickParse.invocation(arguments) == nil)
    }

    /// Random command lines from the options' own words: whatever the quick reader accepts,
    /// argument-parser accepts and reads the same way.
    @Test func randomLinesAgree() {
        let words = [
            "acquire", "release", "run", "status", "x", "y", "--", "--shared", "--wait", "--wait=2", "1", "-1", "0",
            "inf", "--no-wait", "--json", "--check", "--since", "--all", "--shield", "--close", "--token", "t",
            "--ttl", "--pid", "42", "--owner", "shell", "--socket", "/s", "--daemon-timeout", "--conflict-exit-code",
            "7", "-x", "",
        ]
        var generator = SystemRandomNumberGenerator()
        var accepted = 0
        for _ in 0..<3000 {
            let first = ["acquire", "release", "run", "status", "--socket"].randomElement(using: &generator)!
            let line = [first] + (0..<Int.random(in: 0...6, using: &generator)).map { _ in words.randomElement()! }
            guard let quick = QuickParse.invocation(line) else { continue }
            accepted += 1
            #expect(same(quick, argumentParser(line)), "\(line)")
        }
        #expect(accepted > 100)
    }
}

/// The lean lockctl hands every line it does not read to lockctl-full, beside it or installed.
@Suite struct LeanLockctlTests {
    /// Copies lockctl (and lockctl-full at `full`, relative to lockctl's directory) into a fresh
    /// directory tree and runs `lockctl arguments`.
    private func run(fullAt full: String?, _ arguments: String...) throws -> Output {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("lockctl-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root + "/bin", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Binaries.lockctl, toPath: root + "/bin/lockctl")
        if let full {
            let path = root + "/bin/" + full
            try FileManager.default.createDirectory(
                atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: Binaries.lockctl + "-full", toPath: path)
        }
        // A process the test runner forks meanwhile may still hold the copy's descriptor open for
        // writing until it execs: exec then fails with ETXTBSY ("Text file busy") for a moment.
        for _ in 0..<50 {
            // lockctl itself may be the busy copy (the launch throws), or lockctl-full (it says so).
            if let output = try? execute(
                root + "/bin/lockctl", arguments, environment: ["LOCKD_SOCKET": root + "/none"]),
                !output.stderr.contains("Text file busy")
            {
                return output
            }
            usleep(100_000)
        }
        return try execute(root + "/bin/lockctl", arguments, environment: ["LOCKD_SOCKET": root + "/none"])
    }

    @Test("lockctl-full beside lockctl or in ../libexec/lockd answers what the lean one does not read")
    func handsOver() throws {
        for place in ["lockctl-full", "../libexec/lockd/lockctl-full"] {
            let help = try run(fullAt: place, "--help")
            #expect(help.status == 0 && help.stdout.contains("USAGE: lockctl"), "\(place): \(help)")
            let typo = try run(fullAt: place, "acquire")
            #expect(typo.status == 64 && typo.stderr.contains("Missing expected argument"), "\(place): \(typo)")
        }
        // A line it reads itself needs no lockctl-full (here: lockd is not there, 69).
        #expect(try run(fullAt: nil, "status", "x").status == 69)
        let missing = try run(fullAt: nil, "--help")
        #expect(missing.status == 70 && missing.stderr.contains("cannot find lockctl-full"), "\(missing)")
    }
}
