import ArgumentParser
import LockProtocol

struct Release: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "release", abstract: "Release one count of a hold (or all of it).")

    @Argument(help: "Lock name.") var name: String
    @Flag(help: "Release the whole re-entrant count.") var all = false
    @OptionGroup var owner: OwnerOptions
    @Flag(help: "Print the daemon's answer as JSON.") var json = false
    @OptionGroup var global: GlobalOptions

    func run() throws {
        let context = "release \"\(name)\""
        let connection = try global.connect(context)
        let answer = try call(
            connection, context, op: "release", [("lock", .string(name)), ("owner", owner.spec()), ("all", .bool(all))])
        if json { printLine(JSONValue.object([("count", answer["count"] ?? .null)]).serialized) }
    }
}

struct Renew: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "renew", abstract: "Renew a token's lease.")

    @Option(help: "The token.") var token: String
    @Option(help: "New lease in seconds.") var ttl: Double
    @Flag(help: "Print the daemon's answer as JSON.") var json = false
    @OptionGroup var global: GlobalOptions

    func run() throws {
        let context = "renew \"\(token)\""
        let connection = try global.connect(context)
        let answer = try call(connection, context, op: "renew", [("token", .string(token)), ("ttl", .double(ttl))])
        if json { printLine(JSONValue.object([("expires", answer["expires"] ?? .null)]).serialized) }
    }
}

struct Break: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "break",
        abstract: "Take a lock away from its holders (shielded holders lose it when their shield closes).")

    @Argument(help: "Lock name.") var name: String
    @Flag(help: "Print the daemon's answer as JSON.") var json = false
    @OptionGroup var global: GlobalOptions

    func run() throws {
        let context = "break \"\(name)\""
        let connection = try global.connect(context)
        let answer = try call(connection, context, op: "break", [("lock", .string(name))])
        let released = answer["released"] ?? .null
        let deferred = answer["deferred"] ?? .null
        if json {
            printLine(JSONValue.object([("released", released), ("deferred", deferred)]).serialized)
        } else {
            printLine("released \(released.serialized), deferred \(deferred.serialized)")
        }
    }
}
