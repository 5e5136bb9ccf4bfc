import ArgumentParser
import Glibc
import LockClient
import LockCore
import LockProtocol
import LockctlCore

/// The lock-waiting options shared by `acquire` and `run`.
struct WaitOptions: ParsableArguments {
    @Flag(help: "Ask for a shared hold (default: exclusive).") var shared = false
    // Read as text: argument-parser would take `-1` for an option and answer "Missing value".
    @Option(parsing: .unconditional, help: "Seconds to wait for the lock, or inf (default: forever).")
    var wait: String?
    @Flag(help: "Do not wait: fail at once if the lock is held.") var noWait = false
    @Option(help: "Exit code (1-255) when the lock cannot be had (busy, timeout, deadlock).")
    var conflictExitCode: Int32 = Exit.conflict

    func validate() throws {
        try validating {
            if noWait, wait != nil { throw ValidationError("use either --wait or --no-wait, not both") }
            if let wait { _ = try seconds(wait, option: "--wait") }
            // 0 would make a failed acquire look like success to the calling script.
            guard (1...255).contains(conflictExitCode) else {
                throw invalidValue("--conflict-exit-code must be 1-255, not \(conflictExitCode)")
            }
        }
    }

    /// The options as a plain value (read after validation).
    var spec: WaitSpec {
        WaitSpec(
            mode: shared ? .shared : .exclusive,
            seconds: noWait ? 0 : wait.flatMap { secondsValue($0) }.flatMap { $0.isInfinite ? nil : $0 },
            conflictExitCode: conflictExitCode)
    }
}

struct Acquire: DaemonCommand {
    static let configuration = CommandConfiguration(
        commandName: "acquire",
        abstract: "Acquire a lock for the calling shell (re-entrant; released when the shell exits).")

    @Argument(help: "Lock name.", completion: .lockNames) var name: String
    @OptionGroup var waitOptions: WaitOptions
    @OptionGroup var owner: OwnerOptions
    @Option(
        parsing: .unconditional,
        help: "Lease in seconds for a --token owner (default: lockd's limits.default_ttl; at least 0.001).")
    var ttl: String?
    @Flag(help: "Print the grant (lock, mode, count, fence, expires) as JSON; failures too.") var json = false
    @OptionGroup var global: GlobalOptions
    @ParentCommand var lockctl: LockCtl

    func validate() throws {
        try validating {
            if owner.token == nil, ttl != nil { throw ValidationError("--ttl goes with --token") }
            if let ttl { _ = try seconds(ttl, option: "--ttl", minimum: 0.001) }
        }
    }

    func run() throws { try invocation.run() }

    var invocation: AcquireInvocation {
        AcquireInvocation(
            name: name, wait: waitOptions.spec, owner: owner.choice,
            // `inf` is lockd's ceiling (100 years); below 1 ms a lease would end before its answer.
            ttl: ttl.flatMap { secondsValue($0, minimum: 0.001) }.map { $0.isInfinite ? Seconds.ceiling : $0 },
            json: json, daemon: DaemonAddress(self))
    }
}
