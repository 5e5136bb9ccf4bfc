import Foundation
import Testing

/// util-linux's own flock scenarios (tests/ts/flock: non-blocking with a conflict exit code,
/// shared, exclusive, timeout and its time), each run against flock(1) and against lflock.
@Suite("lflock against flock(1)", .serialized)
struct FlockTests {
    static let tools = ["flock", "lflock"]

    /// Runs `script` with `$FLOCK` set to flock(1) or to lflock (a link to lockctl) and a lock file `$F`.
    func run(_ tool: String, _ script: String) throws -> Output {
        let daemon = try Daemon()
        let lflock = daemon.directory + "/lflock"
        try? FileManager.default.removeItem(atPath: lflock)
        try FileManager.default.createSymbolicLink(atPath: lflock, withDestinationPath: Binaries.lockctl)
        let flock = tool == "flock" ? "/usr/bin/flock" : lflock
        // The test runner blocks signals its children inherit; flock(1) times -w with SIGALRM.
        let unblocked =
            "import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); "
            + "os.execvp('bash', ['bash', '-c', sys.argv[1]])"
        return try execute(
            "/usr/bin/env",
            ["python3", "-c", unblocked, "FLOCK=\(flock); F=\(daemon.directory)/lockfile\n" + script],
            environment: ["LOCKD_SOCKET": daemon.socket], timeout: 30)
    }

    @Test("non-blocking: a held lock fails at once with -E's code", arguments: tools)
    func nonblock(_ tool: String) throws {
        let output = try run(
            tool,
            """
            $FLOCK $F sleep 1.5 & sleep 0.4
            $FLOCK -n -E 7 $F true; echo "status=$?"
            wait
            """)
        #expect(output.stdout.contains("status=7"), "\(tool): \(output.stdout)\(output.stderr)")
    }

    @Test("shared holders coexist; an exclusive one waits for them", arguments: tools)
    func shared(_ tool: String) throws {
        let output = try run(
            tool,
            """
            $FLOCK -s $F sleep 1.5 & sleep 0.4
            $FLOCK -s -n $F true; echo "shared=$?"
            $FLOCK -x -n $F true; echo "exclusive=$?"
            wait
            """)
        #expect(
            output.stdout.contains("shared=0") && output.stdout.contains("exclusive=1"), "\(tool): \(output.stdout)")
    }

    @Test("exclusive: a second exclusive lock fails without waiting, and succeeds once free", arguments: tools)
    func exclusive(_ tool: String) throws {
        let output = try run(
            tool,
            """
            $FLOCK -x $F sleep 1 & sleep 0.4
            $FLOCK -x -n $F true; echo "busy=$?"
            wait
            $FLOCK -x -n $F true; echo "free=$?"
            """)
        #expect(output.stdout.contains("busy=1") && output.stdout.contains("free=0"), "\(tool): \(output.stdout)")
    }

    @Test(
        "timeout: -w gives up after about that long with status 1; the command's status passes through",
        arguments: tools)
    func timeout(_ tool: String) throws {
        let output = try run(
            tool,
            """
            $FLOCK $F sleep 2 & sleep 0.4
            start=$(date +%s%N)
            $FLOCK -w 0.5 $F true; echo "status=$?"
            echo "ms=$(( ($(date +%s%N) - start) / 1000000 ))"
            wait
            $FLOCK $F sh -c 'exit 5'; echo "command=$?"
            $FLOCK $F -c 'exit 6'; echo "string=$?"
            """)
        #expect(output.stdout.contains("status=1"), "\(tool): \(output.stdout)\(output.stderr)")
        let elapsed = output.stdout.split(separator: "\n").first { $0.hasPrefix("ms=") }.flatMap {
            Int($0.dropFirst(3))
        }
        #expect(elapsed.map { $0 >= 450 && $0 < 1500 } == true, "\(tool): waited \(String(describing: elapsed)) ms")
        #expect(output.stdout.contains("command=5") && output.stdout.contains("string=6"), "\(tool): \(output.stdout)")
    }

    /// Waits (up to 2 s) until `$FLOCK -n $F true` gets the lock and prints `NAME=STATUS`: a
    /// keeper of lflock's FD form goes a few milliseconds after the last descriptor closes.
    static let untilFree = "free() { for i in $(seq 40); do $FLOCK -n $F true 2>/dev/null && break; sleep 0.05; done; }"

    @Test("FD form: the open file description owns the lock, as with flock(2)", arguments: tools)
    func descriptor(_ tool: String) throws {
        let output = try run(
            tool,
            """
            exec 9>$F
            $FLOCK -n 9; echo "lock=$?"
            $FLOCK -n 9; echo "same-description=$?"
            $FLOCK -n $F true 2>/dev/null; echo "path=$?"
            exec 8>$F; $FLOCK -n -E 7 8 2>/dev/null; echo "other-description=$?"
            $FLOCK -s 9; echo "to-shared=$?"
            $FLOCK -s -n 8; echo "both-shared=$?"
            $FLOCK -u 8; $FLOCK -u 9; echo "unlock=$?"
            $FLOCK -n $F true; echo "free=$?"
            $FLOCK 9; ( $FLOCK -u 9 ); $FLOCK -n $F true; echo "unlocked-by-child=$?"
            $FLOCK 12 2>/dev/null; echo "closed-descriptor=$?"
            $FLOCK abc 2>/dev/null; echo "not-a-descriptor=$?"
            """)
        let expected = """
            lock=0
            same-description=0
            path=1
            other-description=7
            to-shared=0
            both-shared=0
            unlock=0
            free=0
            unlocked-by-child=0
            closed-descriptor=65
            not-a-descriptor=64

            """
        #expect(output.stdout == expected, "\(tool): \(output.stdout)\(output.stderr)")
    }

    @Test("FD form: the lock lasts while any process that inherited the descriptor keeps it", arguments: tools)
    func inherited(_ tool: String) throws {
        let output = try run(
            tool,
            Self.untilFree + """

                exec 9>$F
                $FLOCK 9
                (sleep 1; echo "child-done") &
                exec 9>&-
                sleep 0.2
                $FLOCK -n $F true 2>/dev/null; echo "child-holds=$?"
                wait
                free; echo "after-child=$?"
                bash -c 'exec 9>$1; $0 9; echo "script-locked=$?"' $FLOCK $F
                free; echo "after-script=$?"
                """)
        let expected = """
            child-holds=1
            child-done
            after-child=0
            script-locked=0
            after-script=0

            """
        #expect(output.stdout == expected, "\(tool): \(output.stdout)\(output.stderr)")
    }

    @Test("FD form: -w times out with 1, and a waiter killed while waiting takes nothing", arguments: tools)
    func descriptorWait(_ tool: String) throws {
        let output = try run(
            tool,
            """
            $FLOCK $F sleep 3 & sleep 0.3
            exec 7>$F
            $FLOCK -w 0.3 7 2>/dev/null; echo "timeout=$?"
            $FLOCK 7 & waiter=$!
            sleep 0.3; kill -TERM $waiter; wait $waiter; echo "killed=$?"
            wait
            $FLOCK -n $F true; echo "not-taken=$?"
            """)
        let expected = """
            timeout=1
            killed=143
            not-taken=0

            """
        #expect(output.stdout == expected, "\(tool): \(output.stdout)\(output.stderr)")
    }
}
