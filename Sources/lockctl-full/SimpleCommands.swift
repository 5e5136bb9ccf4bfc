import ArgumentParser
import Glibc
import LockClient
import LockCore
import LockProtocol
import LockctlCore

struct Release: DaemonCommand {
    static let configuration = CommandConfiguration(
        commandName: "release", abstract: "Release one count of a hold (or all of it).")

    @Argument(help: "Lock name.", completion: .lockNames) var name: String
    @Flag(help: "Release the whole re-entrant count.") var all = false
    @OptionGroup var owner: OwnerOptions
    @Flag(help: "Print the daemon's answer as JSON.") var json = false
    @OptionGroup var global: GlobalOptions
    @ParentCommand var lockctl: LockCtl

    func run() throws { try invocation.run() }

    var invocation: ReleaseInvocation {
        ReleaseInvocation(name: name, all: all, owner: owner.choice, json: json, daemon: DaemonAddress(self))
    }
}

struct Renew: DaemonCommand {
    static let configuration = CommandConfiguration(commandName: "renew", abstract: "Renew a token's lease.")

    @Option(help: "The token.") var token: String
    @Option(parsing: .unconditional, help: "New lease in seconds (at least 0.001; inf is lockd's 100-year ceiling).")
    var ttl: String

    func validate() throws { try validating { _ = try lease() } }

    private func lease() throws(ExitCode) -> Double {
        try seconds(ttl, option: "--ttl", minimum: 0.001) ?? Seconds.ceiling
    }
    @Flag(help: "Print the daemon's answer as JSON.") var json = false
    @OptionGroup var global: GlobalOptions
    @ParentCommand var lockctl: LockCtl

    func run() throws {
        failuresAsJSON = json
        let context = "renew \"\(token)\""
        guard Request.isValidToken(token) else {
            printError("\(context) failed: a token is 1-255 bytes with no control characters")
            throw ExitCode(Exit.invalid)
        }
        let connection = try connect(context)
        let answer = try call(connection, context, .renew(token: token, ttl: lease()))
        if json { printLine(JSONValue.object([("expires", answer.expires.map(JSONValue.string) ?? .null)]).serialized) }
    }
}

struct Break: DaemonCommand {
    static let configuration = CommandConfiguration(
        commandName: "break",
        abstract: "Take a lock away from its holders (shielded holders lose it when their shield closes).")

    @Argument(help: "Lock name.", completion: .lockNames) var name: String
    @Flag(help: "Print the daemon's answer as JSON.") var json = false
    @OptionGroup var global: GlobalOptions
    @ParentCommand var lockctl: LockCtl

    func run() throws {
        failuresAsJSON = json
        let context = "break \"\(name)\""
        let lock = try lockName(name, context)
        let connection = try connect(context)
        let broken = try call(connection, context, .breakLock(lock: lock)).broken ?? (0, 0)
        if json {
            printLine(
                JSONValue.object([("released", .int(broken.released)), ("deferred", .int(broken.deferred))]).serialized)
        } else {
            printLine("released \(broken.released), deferred \(broken.deferred)")
        }
    }
}

struct Metrics: DaemonCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics",
        abstract: "Print lockd's metrics in Prometheus' text format (docs/operations.md).")

    @Flag(help: "Print them as JSON: {\"text\": ...}.") var json = false
    @OptionGroup var global: GlobalOptions
    @ParentCommand var lockctl: LockCtl

    func run() throws {
        failuresAsJSON = json
        let connection = try connect("metrics")
        let text = try call(connection, "metrics", .metrics).fields["text"]?.string ?? ""
        if json {
            printLine(JSONValue.object([("text", .string(text))]).serialized)
        } else {
            printLine(text.hasSuffix("\n") ? String(text.dropLast()) : text)
        }
    }
}
