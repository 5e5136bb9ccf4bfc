import Foundation
import LockClient
import LockProtocol
import Testing

/// Runs `script` with bash on a new pseudo-terminal (Tests/LockdTests/pty-session.py): once the
/// file `$R` exists, `keys` are typed. Returns how bash ended and what the terminal showed.
func terminalSession(_ daemon: Daemon, script: String, keys: String, timeout: Double = 15) throws -> [String: JSONValue]
{
    try terminalSession(daemon, command: ["/bin/bash", "-c", script], keys: keys, timeout: timeout)
}

/// Runs `command` on a new pseudo-terminal, with `$R`, `$L` and LOCKD_SOCKET set as above and
/// `environment` added; once the file `$R` exists, `keys` are typed.
func terminalSession(
    _ daemon: Daemon, command: [String], environment: [String: String] = [:], keys: String, timeout: Double = 15
) throws -> [String: JSONValue] {
    let ready = daemon.directory + "/ready-\(UUID().uuidString.prefix(6))"
    let helper = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("pty-session.py")
        .path
    let settings = ["R": ready, "L": Binaries.lockctl, "LOCKD_SOCKET": daemon.socket].merging(environment) { $1 }
    let run = try execute(
        "/usr/bin/env",
        settings.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            + ["python3", helper, ready, "\(timeout)", keys, "--"] + command,
        timeout: timeout + 10)
    let result = try JSONValue.parse(Array(run.stdout.utf8))
    guard case .object(let members) = result else { return [:] }
    return Dictionary(members.map { ($0.key, $0.value) }, uniquingKeysWith: { $1 })
}

@Suite("lockctl in real shells", .serialized)
struct ShellTests {
    @Test("Ctrl-C during `lockctl run` stops the calling script, as it would with flock")
    func controlCStopsScript() throws {
        let daemon = try Daemon()
        let session = try terminalSession(
            daemon, script: "$L run ms -- bash -c 'touch $R; sleep 5'; echo step2", keys: "\\x03")
        #expect(session["signal"] == .int(Int64(SIGINT)), "\(session)")
        #expect(session["output"]?.string?.contains("step2") == false, "\(session)")
        #expect(try daemon.connect().holders("ms").isEmpty)
    }

    @Test("a shielded command may prompt on the terminal; Ctrl-C waits for it, then ends lockctl by SIGINT")
    func shieldedPrompt() throws {
        let daemon = try Daemon()
        let session = try terminalSession(
            daemon,
            script: "$L run x --shield -- bash -c 'touch $R; read -p \"Continue? \" a; echo \"got $a\"'; echo after",
            keys: "\\x03|yes\\n")
        let output = session["output"]?.string ?? ""
        #expect(output.contains("Continue?") && output.contains("got yes"), "\(session)")
        #expect(session["signal"] == .int(Int64(SIGINT)), "the held-back Ctrl-C is delivered after: \(session)")
        #expect(!output.contains("after"), "\(session)")
    }

    @Test("a command that stops stops lockctl too, with a message; continuing lockctl continues it")
    func stoppedCommand() throws {
        let daemon = try Daemon()
        let marker = daemon.directory + "/resumed"
        let (run, _) = try spawn(
            Binaries.lockctl, ["run", "st", "--", "bash", "-c", "kill -STOP $$; touch \(marker)"],
            environment: ["LOCKD_SOCKET": daemon.socket])
        #expect(eventually { processState(run.processIdentifier) == "T" }, "lockctl stops with its command")
        #expect(try daemon.connect().holders("st").count == 1, "the lock stays held meanwhile")
        kill(run.processIdentifier, SIGCONT)
        #expect(waitExit(run) == 0)
        #expect(FileManager.default.fileExists(atPath: marker))
    }

    @Test("processes the command leaves behind keep the hold until they end (flock's rule); --close does not")
    func leftBehind() throws {
        let daemon = try Daemon()
        let pidFile = daemon.directory + "/bg"
        func run(_ arguments: String...) throws -> Int32? { waitExit(try spawnLockctl(daemon, arguments)) }
        #expect(try run("run", "bg", "--", "bash", "-c", "sleep 30 & echo $! > \(pidFile)") == 0)
        #expect(try daemon.lockctl("status", "bg", "--check").status == 0, "held while the background job lives")
        let background = Int32(
            (try String(contentsOfFile: pidFile, encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines))!
        kill(background, SIGKILL)
        #expect(eventually { (try? daemon.lockctl("status", "bg", "--check").status) == 1 })

        #expect(try run("run", "bg2", "--close", "--", "bash", "-c", "sleep 30 & echo $! > \(pidFile)") == 0)
        #expect(try daemon.lockctl("status", "bg2", "--check").status == 1, "--close: the hold ended with lockctl")
        if let left = Int32(
            (try String(contentsOfFile: pidFile, encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines))
        {
            kill(left, SIGKILL)
        }
    }

    @Test("kill -9 of lockctl: the command goes on and keeps the hold until it ends")
    func lockctlKilled() throws {
        let daemon = try Daemon()
        let ready = daemon.directory + "/ready"
        let run = try spawnLockctl(daemon, ["run", "k9", "--", "bash", "-c", "touch \(ready); sleep 1.5"])
        #expect(eventually { FileManager.default.fileExists(atPath: ready) })
        kill(run.processIdentifier, SIGKILL)
        _ = waitExit(run)
        #expect(try daemon.lockctl("status", "k9", "--check").status == 0, "held by the command's connection")
        #expect(eventually(timeout: 8) { (try? daemon.lockctl("status", "k9", "--check").status) == 1 })
    }
}

@Suite("a hold lost while `run`'s command runs", .serialized)
struct LostHoldTests {
    /// Starts `lockctl run LOCK ARGS -- bash -c 'touch READY; COMMAND'` and waits until the command runs.
    func start(_ daemon: Daemon, _ lock: String, _ options: [String], _ command: String) throws -> ChildProcess {
        let ready = daemon.directory + "/ready-\(lock)"
        let run = try spawnLockctl(
            daemon, ["run", lock] + options + ["--", "bash", "-c", "touch \(ready); \(command)"])
        #expect(eventually { FileManager.default.fileExists(atPath: ready) })
        return run
    }

    @Test("by default a break stops the command (TERM) and run exits 3")
    func standard() throws {
        let daemon = try Daemon()
        let run = try start(daemon, "l1", [], "sleep 20")
        let start = Date()
        #expect(try daemon.lockctl("break", "l1").status == 0)
        #expect(waitExit(run) == 3)
        #expect(Date().timeIntervalSince(start) < 5, "TERM ended the command at once")
    }

    @Test("a command that ignores TERM gets KILL after the grace")
    func escalation() throws {
        let daemon = try Daemon()
        let run = try start(daemon, "l2", ["--on-lost", "signal:TERM,grace:0.5,then:KILL"], "trap '' TERM; sleep 20")
        #expect(try daemon.lockctl("break", "l2").status == 0)
        #expect(waitExit(run, timeout: 5) == 3)
    }

    @Test("warn lets the command finish and still exits 3; ignore exits with the command's status")
    func warnAndIgnore() throws {
        let daemon = try Daemon()
        let warned = try start(daemon, "l3", ["--on-lost", "warn"], "sleep 1; exit 0")
        #expect(try daemon.lockctl("break", "l3").status == 0)
        #expect(waitExit(warned) == 3)
        let ignored = try start(daemon, "l4", ["--on-lost", "ignore"], "sleep 1; exit 0")
        #expect(try daemon.lockctl("break", "l4").status == 0)
        #expect(waitExit(ignored) == 0)
    }

    @Test("under --shield the command finishes, and the deferred break still makes run exit 3")
    func shielded() throws {
        let daemon = try Daemon()
        let run = try start(daemon, "l5", ["--shield"], "sleep 1; exit 0")
        let broken = try daemon.lockctl("break", "l5", "--json")
        #expect(broken.stdout.contains("\"deferred\":1"), "\(broken.stdout)")
        #expect(waitExit(run) == 3)
        #expect(try daemon.lockctl("status", "l5", "--check").status == 1)
    }

    @Test("a bad --on-lost is a usage error")
    func badPolicy() throws {
        let run = try execute(Binaries.lockctl, ["run", "x", "--on-lost", "signal:NOPE", "--", "true"])
        #expect(run.status == 64, "\(run.stderr)")
    }
}

@Suite("lockctl's answers to a lockd that refuses, stops or dies", .serialized)
struct DaemonTroubleTests {
    @Test("max_clients reached: lockctl reads lockd's limit line and exits 75")
    func limit() throws {
        let daemon = try Daemon(config: "[limits]\nmax_clients = 1\n")
        // The harness's readiness probe may still count as a client for a moment.
        var occupant: LockConnection?
        #expect(
            eventually {
                occupant = try? daemon.connect(); return (try? occupant?.ask("ping").isOK) == true
            })
        let status = try daemon.lockctl("status")
        #expect(status.status == 75, "\(status.stderr)")
        #expect(status.stderr.contains("at most 1 connections"), "\(status.stderr)")
    }

    @Test("a client during a graceful stop hears that lockd is stopping (75)")
    func stopping() throws {
        let daemon = try Daemon()
        let holder = try daemon.connect()
        #expect(try holder.acquire("s").isOK)
        #expect(try holder.ask("shield", [("lock", "s"), ("on", true)]).isOK)
        kill(daemon.process.processIdentifier, SIGTERM)
        #expect(eventually { daemon.log.contains("waiting up to") })
        let status = try daemon.lockctl("status")
        #expect(status.status == 75, "\(status.stderr)")
        #expect(status.stderr.contains("stopping"), "\(status.stderr)")
        #expect(try holder.ask("shield", [("lock", "s"), ("on", false)]).isOK)
    }

    @Test("a waiter whose lockd dies exits 69 and says so")
    func daemonDies() throws {
        let daemon = try Daemon()
        let holder = try daemon.connect()
        #expect(try holder.acquire("d").isOK)
        let (waiter, _) = try spawn(
            Binaries.lockctl, ["acquire", "d", "--pid", "\(getpid())"], environment: ["LOCKD_SOCKET": daemon.socket])
        #expect(
            eventually { ((try? holder.ask("status", [("lock", "d")]).serialized) ?? "").contains("\"waiters\":[{") })
        daemon.crash()
        #expect(waitExit(waiter) == 69)
    }

    @Test("a stopped lockd (SIGSTOP) does not hang lockctl: bounded by --daemon-timeout, and by --wait")
    func stoppedDaemon() throws {
        let daemon = try Daemon()
        kill(daemon.process.processIdentifier, SIGSTOP)
        defer { kill(daemon.process.processIdentifier, SIGCONT) }
        let start = Date()
        let status = try daemon.lockctl("status", "--daemon-timeout", "0.5", timeout: 10)
        #expect(status.status == 69, "\(status.stderr)")
        #expect(status.stderr.contains("is lockd stopped"), "\(status.stderr)")
        let acquire = try daemon.lockctl("acquire", "x", "--wait", "0.3", "--daemon-timeout", "0.5", timeout: 10)
        #expect(acquire.status == 69, "\(acquire.stderr)")
        #expect(Date().timeIntervalSince(start) < 5)
    }
}

@Suite("lockctl's values and small promises")
struct LockctlValueTests {
    @Test(
        "bad values exit 65 with a clear message",
        arguments: [
            ["acquire", "x", "--wait", "-1"], ["acquire", "x", "--wait", "soon"], ["acquire", "x", "--wait", "nan"],
            ["acquire", "x", "--token", "t", "--ttl", "1e-9"], ["acquire", "x", "--conflict-exit-code", "0"],
            ["acquire", "x", "--conflict-exit-code", "256"], ["renew", "--token", "t", "--ttl", "-5"],
            ["status", "--socket", ""], ["acquire", "bad name"],
        ])
    func badValues(_ arguments: [String]) throws {
        let run = try execute(Binaries.lockctl, arguments, environment: ["LOCKD_SOCKET": "/nonexistent/lockd.sock"])
        #expect(run.status == 65, "\(arguments): \(run.status) \(run.stderr)")
        #expect(!run.stderr.isEmpty)
    }

    @Test("--wait inf waits; a token without --ttl takes limits.default_ttl; grants report when leases end")
    func values() throws {
        let daemon = try Daemon(config: "[limits]\ndefault_ttl = 30\nmax_ttl = 60\n")
        #expect(try daemon.lockctl("acquire", "w", "--wait", "inf", "--pid", "\(getpid())").status == 0)
        let token = try daemon.lockctl("acquire", "t", "--token", "job", "--json")
        #expect(token.status == 0, "\(token.stderr)")
        #expect(token.stdout.contains("\"expires\":\"20"), "\(token.stdout)")
        let shortened = try daemon.lockctl("acquire", "t2", "--token", "job2", "--ttl", "1e16", "--json")
        let expires = try JSONValue.parse(Array(shortened.stdout.utf8))["expires"]?.string.flatMap(Timestamp.parse)
        #expect(expires.map { $0 - Date().timeIntervalSince1970 < 61 } == true, "max_ttl shows: \(shortened.stdout)")
    }

    @Test("status NAME --check exits 0 when held and 1 when free; --json failures are JSON too")
    func check() throws {
        let daemon = try Daemon()
        #expect(try daemon.lockctl("status", "c", "--check").status == 1)
        #expect(try daemon.lockctl("acquire", "c", "--pid", "\(getpid())").status == 0)
        #expect(try daemon.lockctl("status", "c", "--check").status == 0)
        let busy = try daemon.lockctl("acquire", "c", "--token", "other", "--ttl", "30", "--no-wait", "--json")
        #expect(busy.status != 0)
        #expect(try JSONValue.parse(Array(busy.stdout.utf8))["error"]?["code"] == "busy", "\(busy.stdout)")
    }

    @Test("a regular file at the socket path is named as such; a too-long path is refused before anything is made")
    func socketPaths() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = directory + "/plain"
        _ = FileManager.default.createFile(atPath: file, contents: Data("x".utf8))
        let status = try execute(Binaries.lockctl, ["status", "--socket", file])
        #expect(status.status == 69)
        #expect(status.stderr.contains("is not a socket"), "\(status.stderr)")

        let long = directory + "/" + String(repeating: "d", count: 120) + "/lockd.sock"
        let lockd = try execute(Binaries.lockd, ["--socket", long, "--state-dir", ""], timeout: 10)
        #expect(lockd.status == 1)
        #expect(lockd.stderr.contains("socket path is too long"), "\(lockd.stderr)")
        #expect(!FileManager.default.fileExists(atPath: directory + "/" + String(repeating: "d", count: 120)))
    }

    @Test("shield --on for a token is refused: it would end with lockctl's connection")
    func tokenShield() throws {
        let daemon = try Daemon()
        #expect(try daemon.lockctl("acquire", "ts", "--token", "t", "--ttl", "30").status == 0)
        let shield = try daemon.lockctl("shield", "ts", "--on", "--token", "t")
        #expect(shield.status == 64, "\(shield.stderr)")
        #expect(shield.stderr.contains("lockctl run ts --shield"), "\(shield.stderr)")
    }

    @Test("status escapes other users' control characters and fits 100 columns")
    func escaping() throws {
        let daemon = try Daemon()
        let ready = daemon.directory + "/ready"
        let (owner, _) = try spawn(
            "/bin/bash", ["-c", "touch \(ready); exec -a $'evil\\e[31mred\\nline' sleep 30"], environment: [:])
        defer { kill(owner.processIdentifier, SIGKILL) }
        #expect(eventually { FileManager.default.fileExists(atPath: ready) })
        #expect(
            eventually {
                (try? String(contentsOfFile: "/proc/\(owner.processIdentifier)/cmdline", encoding: .utf8))?.hasPrefix(
                    "evil") == true
            })
        #expect(try daemon.lockctl("acquire", "e", "--pid", "\(owner.processIdentifier)").status == 0)
        let status = try daemon.lockctl("status")
        #expect(!status.stdout.contains("\u{1b}"), "no raw escape reaches the terminal")
        #expect(status.stdout.contains("evil\\x1b[31mred\\nline"), "\(status.stdout)")
        for line in status.stdout.split(separator: "\n") { #expect(line.count <= 100, "\(line)") }
    }
}

@Suite("the README tour", .serialized)
struct TourTests {
    @Test("the README's tour runs top to bottom in a fresh shell, without hanging")
    func tour() throws {
        let readme = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
            "../../README.md"
        ).standardized.path
        let text = try String(contentsOfFile: readme, encoding: .utf8)
        let start = try #require(text.range(of: "## Tour\n\n```sh\n"))
        let end = try #require(text.range(of: "```", range: start.upperBound..<text.endIndex))
        let tour = text[start.upperBound..<end.lowerBound].replacingOccurrences(of: "./migrate.sh", with: "true")
            .replacingOccurrences(of: "./cleanup.sh", with: "true")
        let daemon = try Daemon()
        let run = try daemon.shell("set -e; lockctl() { \"$L\" \"$@\"; }\n" + tour, timeout: 30)
        #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
    }

    @Test("a wrapper as owner is warned about; --owner shell and --pid $$ name the script's shell")
    func wrappers() throws {
        let daemon = try Daemon()
        let script = """
            timeout 5 "$L" acquire t1; "$L" status t1 --check; echo "t1=$?"
            timeout 5 "$L" acquire t2 --owner shell; "$L" status t2 --check; echo "t2=$?"
            ( "$L" acquire t3 --pid $$ ); "$L" status t3 --check; echo "t3=$?"
            exit 0
            """
        let run = try daemon.shell(script)
        #expect(run.stderr.contains("warning: the hold's owner is pid"), "\(run.stderr)")
        #expect(run.stderr.contains("(timeout), not a shell"), "\(run.stderr)")
        #expect(run.stdout.contains("t1=1"), "the wrapper's hold ended with it: \(run.stdout)")
        #expect(run.stdout.contains("t2=0") && run.stdout.contains("t3=0"), "\(run.stdout)")
    }

    @Test("a wait that lasts says who holds the lock, and that a parent shell's hold cannot end")
    func waitReport() throws {
        let daemon = try Daemon()
        // `; exit $?` keeps bash from replacing itself with the last lockctl (exec).
        let run = try daemon.shell("\"$L\" acquire db; \"$L\" run db --wait 2 -- true; exit $?", timeout: 20)
        #expect(run.status == 1, "the wait ran out")
        #expect(run.stderr.contains("waiting for \"db\": held by pid"), "\(run.stderr)")
        #expect(run.stderr.contains("your parent shell"), "\(run.stderr)")
        #expect(run.stderr.contains("cannot end by itself"), "\(run.stderr)")
    }
}

/// Starts lockctl against `daemon` with posix_spawn. Foundation's `Process` counts a process as
/// running while any descendant keeps a descriptor it handed out, and a command lockctl runs does.
func spawnLockctl(_ daemon: Daemon, _ arguments: [String]) throws -> ChildProcess {
    let log = daemon.directory + "/lockctl-\(UUID().uuidString.prefix(6)).log"
    _ = FileManager.default.createFile(atPath: log, contents: nil)
    return try ChildProcess([Binaries.lockctl] + arguments, environment: ["LOCKD_SOCKET": daemon.socket], output: log)
}

/// The state letter of a process (R, S, T, Z), from /proc.
func processState(_ pid: Int32) -> String? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
    else { return nil }
    return String(stat[stat.index(close, offsetBy: 2)])
}

@Suite("shell completions")
struct CompletionTests {
    @Test("bash completes subcommands, and lock names from lockd's status (with --socket or $LOCKD_SOCKET)")
    func bashCompletesLockNames() throws {
        let daemon = try Daemon()
        let holder = try daemon.connect()
        #expect(try holder.acquire("deploy/db").isOK)
        #expect(try holder.acquire("deploy/web").isOK)
        #expect(try holder.acquire("cache").isOK)
        // The real function bash calls on Tab, with the line being completed.
        func complete(_ line: String, environment: [String: String] = [:]) throws -> [String] {
            let script = """
                source <(lockctl --generate-completion-script bash)
                COMP_LINE='\(line)'; COMP_POINT=${#COMP_LINE}
                read -ra COMP_WORDS <<< "$COMP_LINE"; [[ $COMP_LINE == *' ' ]] && COMP_WORDS+=('')
                COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
                _lockctl; printf '%s\\n' "${COMPREPLY[@]}"
                """
            let run = try execute(
                "/bin/bash", ["-c", script],
                environment: ["PATH": Binaries.directory + ":/usr/bin:/bin"].merging(environment) { $1 })
            #expect(run.status == 0, "\(run.stderr)")
            return run.stdout.split(separator: "\n").map(String.init)
        }
        #expect(try complete("lockctl rel").contains("release"))
        #expect(try complete("lockctl release --socket \(daemon.socket) dep").sorted() == ["deploy/db", "deploy/web"])
        #expect(try complete("lockctl acquire c", environment: ["LOCKD_SOCKET": daemon.socket]) == ["cache"])
        // No lockd: no names, no error on the terminal.
        #expect(try complete("lockctl status dep", environment: ["LOCKD_SOCKET": daemon.directory + "/none"]).isEmpty)
    }

    /// Types `lockctl release dep` and Tab twice into an interactive `shell` on a terminal, with
    /// lockctl's generated completion script where that shell looks for it. Returns whether the
    /// screen came to show both lock names (bounded by a generous timeout: under ThreadSanitizer a
    /// completion runs two instrumented binaries), and what it showed.
    func tabInShell(_ shell: String, _ daemon: Daemon) throws -> (shown: Bool, screen: String) {
        let holder = try daemon.connect()
        #expect(try holder.acquire("deploy/db").isOK)
        #expect(try holder.acquire("deploy/web").isOK)
        let home = daemon.directory + "/home-\(shell)"
        let generated = try execute(Binaries.lockctl, ["--generate-completion-script", shell])
        #expect(generated.status == 0, "\(generated.stderr)")
        var environment = ["HOME": home, "PATH": Binaries.directory + ":/usr/bin:/bin", "TERM": "xterm"]
        let command: [String]
        if shell == "zsh" {
            try FileManager.default.createDirectory(atPath: home + "/functions", withIntermediateDirectories: true)
            try generated.stdout.write(toFile: home + "/functions/_lockctl", atomically: true, encoding: .utf8)
            try """
            fpath=(\(home)/functions $fpath)
            autoload -U compinit && compinit -u -d \(home)/zcompdump
            PS1='%% '
            touch $R
            """.write(toFile: home + "/.zshrc", atomically: true, encoding: .utf8)
            environment["ZDOTDIR"] = home
            command = ["/usr/bin/zsh", "-i"]
        } else {
            let completions = home + "/config/fish/completions"
            try FileManager.default.createDirectory(atPath: completions, withIntermediateDirectories: true)
            try generated.stdout.write(toFile: completions + "/lockctl.fish", atomically: true, encoding: .utf8)
            environment["XDG_CONFIG_HOME"] = home + "/config"
            environment["XDG_DATA_HOME"] = home + "/data"
            command = ["/usr/bin/fish", "-i", "-C", "touch $R"]
        }
        environment["PTY_UNTIL"] = "deploy/db\ndeploy/web"
        let session = try terminalSession(
            daemon, command: command, environment: environment, keys: "lockctl release dep\\t|\\t", timeout: 120)
        return (session["until"] == .bool(true), session["output"]?.string ?? "\(session)")
    }

    @Test("zsh completes lock names from lockd's status on Tab (scripts/deps installs zsh)")
    func zshCompletesLockNames() throws {
        let (shown, screen) = try tabInShell("zsh", try Daemon())
        #expect(shown, "\(screen)")
    }

    @Test("fish completes lock names from lockd's status on Tab (scripts/deps installs fish)")
    func fishCompletesLockNames() throws {
        let (shown, screen) = try tabInShell("fish", try Daemon())
        #expect(shown, "\(screen)")
    }
}
