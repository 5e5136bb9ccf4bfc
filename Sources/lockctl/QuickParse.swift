import ArgumentParser
import LockProtocol

/// The command lines scripts run in loops (`acquire`, `release`, `run`, `status`, `--version`),
/// read without argument-parser.
///
/// argument-parser builds each command's argument set by reflection, and every first conformance
/// check it makes scans all of the binary's conformance records: half of a `lockctl run`'s CPU
/// time (docs/performance.md). This reader fills the same command values directly. It accepts
/// only plain shapes: long options spelled out (`--wait 5` or `--wait=5`), each at most once, and
/// no value that begins with `-` where argument-parser would read an option. Anything else —
/// help, short options, a typo, a repeated option — returns `nil` and goes to argument-parser,
/// which then parses, explains or refuses it. A test checks that every command line this accepts
/// parses to the same value under argument-parser (QuickParseTests).
enum QuickParse {
    /// The command `arguments` (without the program name) name, if it has a plain shape.
    static func command(_ arguments: [String]) -> (any ParsableCommand)? {
        var reader = Reader(arguments)
        // lockctl's own options may stand before the subcommand's name or among its arguments:
        // argument-parser gives their values to both lockctl and the subcommand.
        var global = PartialGlobal()
        reader.leadingGlobals(&global)
        guard let name = reader.next() else { return nil }
        switch name {
        case "--version" where reader.atEnd && global.isEmpty:
            return Version()
        case "acquire": return acquire(&reader, &global).map { global.assign(to: $0) }
        case "release": return release(&reader, &global).map { global.assign(to: $0) }
        case "run": return run(&reader, &global).map { global.assign(to: $0) }
        case "status": return status(&reader, &global).map { global.assign(to: $0) }
        default: return nil
        }
    }

    /// Runs the checks argument-parser runs while parsing, in its order: lockctl's own options,
    /// then the command's option groups as declared, then the command's.
    static func validate(_ command: any ParsableCommand) throws {
        var command = command
        func check(_ root: LockCtl, _ groups: any ParsableArguments...) throws {
            try root.global.validate()
            for var group in groups { try group.validate() }
            try command.validate()
        }
        switch command {
        case let acquire as Acquire: try check(acquire.lockctl, acquire.waitOptions, acquire.owner, acquire.global)
        case let release as Release: try check(release.lockctl, release.owner, release.global)
        case let run as Run: try check(run.lockctl, run.waitOptions, run.global)
        case let status as Status: try check(status.lockctl, status.global)
        default: try command.validate()
        }
    }

    private static func acquire(_ reader: inout Reader, _ global: inout PartialGlobal) -> Acquire? {
        var command = Acquire()
        var name: String?
        var wait = WaitOptions.empty
        var owner = OwnerOptions.empty
        var ttl: String?
        var json = false
        while let token = reader.next() {
            guard
                reader.positional(token, into: &name) || reader.wait(token, &wait) || reader.owner(token, &owner)
                    || reader.global(token, &global) || reader.flag(token, "--json", &json)
                    || reader.value(token, "--ttl", &ttl, unconditional: true)
            else { return nil }
        }
        guard reader.finished, let name else { return nil }
        command.name = name
        command.waitOptions = wait.options
        command.owner = owner.options
        command.ttl = ttl
        command.json = json
        return command
    }

    private static func release(_ reader: inout Reader, _ global: inout PartialGlobal) -> Release? {
        var command = Release()
        var name: String?
        var all = false
        var owner = OwnerOptions.empty
        var json = false
        while let token = reader.next() {
            guard
                reader.positional(token, into: &name) || reader.flag(token, "--all", &all)
                    || reader.owner(token, &owner) || reader.global(token, &global)
                    || reader.flag(token, "--json", &json)
            else { return nil }
        }
        guard reader.finished, let name else { return nil }
        command.name = name
        command.all = all
        command.owner = owner.options
        command.json = json
        return command
    }

    private static func run(_ reader: inout Reader, _ global: inout PartialGlobal) -> Run? {
        var command = Run()
        var name: String?
        var wait = WaitOptions.empty
        var shield = false
        var close = false
        var global = PartialGlobal()
        var arguments: [String] = []
        while let token = reader.next() {
            if token == "--" {
                arguments = reader.rest()
                break
            }
            guard
                reader.positional(token, into: &name) || reader.wait(token, &wait) || reader.global(token, &global)
                    || reader.flag(token, "--shield", &shield) || reader.flag(token, "--close", &close)
            else { return nil }
        }
        guard reader.finished, let name, !arguments.isEmpty else { return nil }
        command.name = name
        command.command = arguments
        command.waitOptions = wait.options
        command.shield = shield
        command.onLost = .standard
        command.lostExitCode = Exit.lost
        command.close = close
        return command
    }

    private static func status(_ reader: inout Reader, _ global: inout PartialGlobal) -> Status? {
        var command = Status()
        var name: String?
        var json = false
        var check = false
        var since = false
        while let token = reader.next() {
            guard
                reader.positional(token, into: &name) || reader.flag(token, "--json", &json)
                    || reader.flag(token, "--check", &check) || reader.flag(token, "--since", &since)
                    || reader.global(token, &global)
            else { return nil }
        }
        guard reader.finished else { return nil }
        command.name = name
        command.json = json
        command.check = check
        command.since = since
        return command
    }
}

/// `lockctl --version`, as argument-parser prints it.
private struct Version: ParsableCommand {
    func run() throws { printLine(lockdVersion) }
}

/// Values read so far. argument-parser's property wrappers must not be read (even through
/// `inout`) before they are assigned, so the reader fills plain fields and assigns them at the end.
private struct PartialGlobal {
    var socket: String?
    var daemonTimeout: String?

    var isEmpty: Bool { socket == nil && daemonTimeout == nil }

    var options: GlobalOptions {
        var options = GlobalOptions()
        options.socket = socket
        options.daemonTimeout = daemonTimeout
        return options
    }

    /// The command with these options, as its own and as lockctl's.
    func assign<Command: DaemonCommand>(to command: Command) -> Command {
        var command = command
        var root = LockCtl()
        root.global = options
        command.global = options
        command.lockctl = root
        return command
    }
}

private struct PartialWait {
    var shared = false
    var wait: String?
    var noWait = false
    var conflictExitCode: Int32?

    var options: WaitOptions {
        var options = WaitOptions()
        options.shared = shared
        options.wait = wait
        options.noWait = noWait
        options.conflictExitCode = conflictExitCode ?? Exit.conflict
        return options
    }
}

extension WaitOptions {
    fileprivate static var empty: PartialWait { PartialWait() }
}

private struct PartialOwner {
    var pid: Int32?
    var owner: OwnerOptions.Ancestor?
    var token: String?

    var options: OwnerOptions {
        var options = OwnerOptions()
        options.pid = pid
        options.owner = owner
        options.token = token
        return options
    }
}

extension OwnerOptions {
    fileprivate static var empty: PartialOwner { PartialOwner() }
}

/// Walks the arguments. Each matcher returns whether it consumed `token` (and the value after
/// it); a token no matcher takes, or a matcher that finds the shape unusual, ends the quick path.
private struct Reader {
    private let arguments: [String]
    private var index = 0
    /// Set once the shape is one argument-parser must judge; every matcher then declines.
    private var unusual = false
    private var seen: Set<String> = []

    init(_ arguments: [String]) { self.arguments = arguments }

    var atEnd: Bool { index == arguments.count }

    /// Whether every argument was taken in a plain shape.
    var finished: Bool { atEnd && !unusual }

    /// lockctl's own options before the subcommand's name.
    mutating func leadingGlobals(_ options: inout PartialGlobal) {
        while !unusual, index < arguments.count {
            index += 1
            if !global(arguments[index - 1], &options) {
                index -= 1
                return
            }
        }
    }

    mutating func next() -> String? {
        guard !unusual, index < arguments.count else { return nil }
        defer { index += 1 }
        return arguments[index]
    }

    mutating func rest() -> [String] {
        defer { index = arguments.count }
        return Array(arguments[index...])
    }

    mutating func global(_ token: String, _ options: inout PartialGlobal) -> Bool {
        value(token, "--socket", &options.socket) || value(token, "--daemon-timeout", &options.daemonTimeout)
    }

    /// The one positional argument (a lock name).
    mutating func positional(_ token: String, into slot: inout String?) -> Bool {
        guard !token.hasPrefix("-"), !token.isEmpty else { return false }
        guard slot == nil else { return decline() }
        slot = token
        return true
    }

    mutating func flag(_ token: String, _ name: String, _ slot: inout Bool) -> Bool {
        guard token == name else { return false }
        guard seen.insert(name).inserted else { return decline() }
        slot = true
        return true
    }

    /// `--name VALUE` or `--name=VALUE`. An `unconditional` option takes whatever follows (as
    /// argument-parser's `.unconditional` does); another one declines a value that looks like an
    /// option.
    mutating func value(_ token: String, _ name: String, _ slot: inout String?, unconditional: Bool = false) -> Bool {
        let text: String
        if token == name {
            guard index < arguments.count else { return decline() }
            text = arguments[index]
            index += 1
            if !unconditional, text.hasPrefix("-") { return decline() }
        } else if token.hasPrefix(name + "=") {
            text = String(token.dropFirst(name.count + 1))
        } else {
            return false
        }
        guard seen.insert(name).inserted else { return decline() }
        slot = text
        return true
    }

    mutating func wait(_ token: String, _ wait: inout PartialWait) -> Bool {
        var code: String?
        if value(token, "--conflict-exit-code", &code) {
            guard let number = code.flatMap({ Int32($0) }) else { return decline() }
            wait.conflictExitCode = number
            return true
        }
        return flag(token, "--shared", &wait.shared) || flag(token, "--no-wait", &wait.noWait)
            || value(token, "--wait", &wait.wait, unconditional: true)
    }

    mutating func owner(_ token: String, _ owner: inout PartialOwner) -> Bool {
        var text: String?
        if value(token, "--pid", &text) {
            guard let pid = text.flatMap({ Int32($0) }) else { return decline() }
            owner.pid = pid
            return true
        }
        if value(token, "--owner", &text) {
            guard let ancestor = text.flatMap({ OwnerOptions.Ancestor(rawValue: $0) }) else { return decline() }
            owner.owner = ancestor
            return true
        }
        return value(token, "--token", &owner.token)
    }

    private mutating func decline() -> Bool {
        unusual = true
        return false
    }
}
