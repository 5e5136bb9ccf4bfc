import ArgumentParser
import Testing

@testable import lockctl

/// lockctl's quick reader must agree with argument-parser on every command line it accepts, and
/// leave everything unusual to argument-parser.
@Suite struct QuickParseTests {
    static let plain: [[String]] = [
        ["--version"],
        ["acquire", "x"],
        ["acquire", "db.migrate", "--shared", "--wait", "5", "--json"],
        ["acquire", "x", "--wait=-1"],
        ["acquire", "x", "--wait", "-1"],
        ["acquire", "x", "--no-wait", "--conflict-exit-code", "9"],
        ["acquire", "x", "--token", "t1", "--ttl", "30"],
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
        // Refused by validation, in both readers.
        ["acquire", "x", "--wait", "soon"],
        ["acquire", "x", "--wait", "1", "--no-wait"],
        ["acquire", "x", "--ttl", "5"],
        ["acquire", "x", "--pid", "1", "--token", "t"],
        ["acquire", "x", "--conflict-exit-code", "0"],
        ["status", "--check"],
        ["release", "x", "--socket="],
    ]

    static let unusual: [[String]] = [
        [], ["--help"], ["-h"], ["help"], ["acquire"], ["acquire", "-h"], ["acquire", "x", "--help"],
        ["acquire", "x", "y"], ["acquire", "x", "--wait"], ["acquire", "x", "--shared", "--shared"],
        ["acquire", "x", "--socket", "-s"], ["acquire", "x", "--pid", "abc"], ["acquire", "x", "--owner", "me"],
        ["acquire", "x", "--frobnicate"], ["acquire", "--", "x"], ["acquire", "-x"], ["run", "x"],
        ["run", "x", "--"], ["run", "x", "--on-lost", "warn", "--", "true"], ["run", "x", "-o", "--", "true"],
        ["status", "x", "y"], ["flock", "/tmp/f", "true"], ["break", "x"], ["--version", "x"],
        ["--socket", "/s", "--version"], ["acquire", "x", "--socket", "/a", "--socket", "/b"],
    ]

    /// A value's full dump: every field, set or not (an unset argument-parser wrapper shows as a
    /// definition, and so differs).
    private func dumped(_ value: Any) -> String {
        var text = ""
        dump(value, to: &text)
        return text
    }

    /// The quick reader's outcome: the validated command, or that validation refused it.
    private func quick(_ arguments: [String]) -> String? {
        guard let command = QuickParse.command(arguments) else { return nil }
        do {
            try QuickParse.validate(command)
            return dumped(command)
        } catch {
            return "refused"
        }
    }

    private func argumentParser(_ arguments: [String]) -> String {
        do {
            return try dumped(LockCtl.parseAsRoot(arguments))
        } catch {
            return "refused"
        }
    }

    @Test(arguments: plain) func plainLinesReadAsArgumentParserReadsThem(_ arguments: [String]) throws {
        let read = try #require(quick(arguments), "the quick reader declined \(arguments)")
        if arguments == ["--version"] { return }  // argument-parser reports the version by throwing
        #expect(read == argumentParser(arguments))
    }

    @Test(arguments: unusual) func unusualLinesGoToArgumentParser(_ arguments: [String]) {
        #expect(QuickParse.command(arguments) == nil)
    }

    /// Random command lines from the options' own words: whatever the quick reader accepts,
    /// argument-parser reads the same way.
    @Test func randomLinesAgree() {
        let words = [
            "acquire", "release", "run", "status", "x", "y", "--", "--shared", "--wait", "--wait=2", "1", "-1", "inf",
            "--no-wait", "--json", "--check", "--since", "--all", "--shield", "--close", "--token", "t", "--ttl",
            "--pid", "42", "--owner", "shell", "--socket", "/s", "--daemon-timeout", "--conflict-exit-code", "7", "-x",
            "",
        ]
        var generator = SystemRandomNumberGenerator()
        var accepted = 0
        for _ in 0..<3000 {
            let first = ["acquire", "release", "run", "status", "--socket"].randomElement(using: &generator)!
            let line = [first] + (0..<Int.random(in: 0...6, using: &generator)).map { _ in words.randomElement()! }
            guard let read = quick(line) else { continue }
            accepted += 1
            #expect(read == argumentParser(line), "\(line)")
        }
        #expect(accepted > 100)
    }
}
