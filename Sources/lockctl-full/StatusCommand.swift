import ArgumentParser
import Glibc
import LockClient
import LockCore
import LockProtocol
import LockctlCore

struct Status: DaemonCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show who holds and who waits for locks.",
        discussion: """
            STATE is held, waiting, breaking (a break waits for the holder's shield to close) or expiring \
            (the lease ran out; the expiry waits for the shield). AGE is how long the hold or wait has lasted; \
            --since shows the times instead. Text from other users (command lines, tokens) is shown with \
            control characters escaped. --watch redraws the table whenever a lock changes (and every second \
            on a terminal, for the ages) until interrupted; with --json it prints lockd's answer and then \
            each `changed` event, one JSON object per line.
            """)

    @Argument(help: "Only this lock.", completion: .lockNames) var name: String?
    @Flag(help: "Print the protocol's JSON answer (failures too).") var json = false
    @Flag(help: "Print nothing; exit 0 when the lock NAME is held, 1 when it is free.") var check = false
    @Flag(help: "Show when holds and waits began and when leases end, instead of ages.") var since = false
    @Flag(help: "Keep watching: redraw as locks change, until interrupted (Ctrl-C).") var watch = false
    @OptionGroup var global: GlobalOptions
    @ParentCommand var lockctl: LockCtl

    func validate() throws {
        if check, name == nil { throw ValidationError("--check needs a lock NAME") }
        if check, watch { throw ValidationError("use either --check or --watch, not both") }
    }

    func run() throws { try invocation.run() }

    var invocation: StatusInvocation {
        StatusInvocation(
            name: name, json: json, check: check, since: since, watch: watch, daemon: DaemonAddress(self))
    }
}
