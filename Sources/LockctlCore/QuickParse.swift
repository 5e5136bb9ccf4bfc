import LockCore
import LockProtocol

/// The command lines scripts run in loops (`acquire`, `release`, `run`, `status`, `--version`),
/// read without argument-parser.
///
/// argument-parser builds each command's argument set by reflection and creates its property
/// wrappers, and every first conformance check on the way scans all of the binary's conformance
/// records: most of a `lockctl status`'s own CPU time (docs/performance.md). This reader turns
/// the plain shapes straight into the ``Invocation`` that argument-parser's command would run:
/// long options spelled out (`--wait 5` or `--wait=5`), each at most once, with valid values.
/// Anything else (help, short options, a typo, a repeat, a value argument-parser would refuse)
/// returns `nil` and goes to argument-parser, which parses, explains or refuses it. A test checks
/// that both readers agree on every command line this one accepts (QuickParseTests).
package enum QuickParse {
    /// What `arguments` (without the program name) ask for, if they have a plain shape.
    package static func invocation(_ arguments: [String]) -> (any Invocation)? {
        var reader = Reader(arguments)
        // lockctl's own options may stand before the subcommand's name or among its arguments;
        // argument-parser reads them into both, and the subcommand's are used.
        var daemon = DaemonAddress()
        while reader.daemon(&daemon) {}
        guard let name = reader.next() else { return nil }
        let invocation: (any Invocation)?
        switch name {
        case "--version": invocation = daemon == DaemonAddress() ? VersionInvocation() : nil
        case "acquire": invocation = acquire(&reader, &daemon)
        case "release": invocation = release(&reader, &daemon)
        case "run": invocation = run(&reader, &daemon)
        case "status": invocation = status(&reader, &daemon)
        default: invocation = nil
        }
        guard reader.finished, daemon.isValid else { return nil }
        return invocation
    }

    private static func acquire(_ reader: inout Reader, _ daemon: inout DaemonAddress) -> AcquireInvocation? {
        var name: String?
        var wait = PartialWait()
        var owner = OwnerChoice()
        var ttl: String?
        var json = false
        while let token = reader.next() {
            guard
                reader.positional(token, &name) || reader.wait(token, &wait) || reader.owner(token, &owner)
                    || reader.daemon(token, &daemon) || reader.flag(token, "--json", &json)
                    || reader.value(token, "--ttl", &ttl, unconditional: true)
            else { return nil }
        }
        // argument-parser's checks: --ttl only with --token, a lease of at least 1 ms.
        let lease = ttl.flatMap { secondsValue($0, minimum: 0.001) }
        guard let name, let spec = wait.spec, owner.isValid, ttl == nil || owner.token != nil && lease != nil
        else { return nil }
        return AcquireInvocation(
            name: name, wait: spec, owner: owner, ttl: lease.map { $0.isInfinite ? Seconds.ceiling : $0 },
            json: json, daemon: daemon)
    }

    private static func release(_ reader: inout Reader, _ daemon: inout DaemonAddress) -> ReleaseInvocation? {
        var name: String?
        var all = false
        var owner = OwnerChoice()
        var json = false
        while let token = reader.next() {
            guard
                reader.positional(token, &name) || reader.flag(token, "--all", &all) || reader.owner(token, &owner)
                    || reader.daemon(token, &daemon) || reader.flag(token, "--json", &json)
            else { return nil }
        }
        guard let name, owner.isValid else { return nil }
        return ReleaseInvocation(name: name, all: all, owner: owner, json: json, daemon: daemon)
    }

    private static func run(_ reader: inout Reader, _ daemon: inout DaemonAddress) -> RunInvocation? {
        var name: String?
        var wait = PartialWait()
        var shield = false
        var close = false
        var command: [String] = []
        while let token = reader.next() {
            if token == "--" {
                command = reader.rest()
                break
            }
            guard
                reader.positional(token, &name) || reader.wait(token, &wait) || reader.daemon(token, &daemon)
                    || reader.flag(token, "--shield", &shield) || reader.flag(token, "--close", &close)
            else { return nil }
        }
        guard let name, let spec = wait.spec, !command.isEmpty else { return nil }
        return RunInvocation(name: name, wait: spec, shield: shield, close: close, daemon: daemon, command: command)
    }

    private static func status(_ reader: inout Reader, _ daemon: inout DaemonAddress) -> StatusInvocation? {
        var name: String?
        var json = false
        var check = false
        var since = false
        while let token = reader.next() {
            guard
                reader.positional(token, &name) || reader.flag(token, "--json", &json)
                    || reader.flag(token, "--check", &check) || reader.flag(token, "--since", &since)
                    || reader.daemon(token, &daemon)
            else { return nil }
        }
        guard name != nil || !check else { return nil }
        return StatusInvocation(name: name, json: json, check: check, since: since, daemon: daemon)
    }
}

/// `lockctl --version`, as argument-parser prints it.
package struct VersionInvocation: Invocation {
    package func run() throws { printLine(lockdVersion) }
}

extension DaemonAddress {
    /// What argument-parser's `GlobalOptions.validate` accepts.
    fileprivate var isValid: Bool {
        socket?.isEmpty != true && daemonTimeout.map { secondsValue($0) != nil } != false
    }
}

extension OwnerChoice {
    /// At most one of --pid, --owner and --token (`OwnerOptions.validate`).
    fileprivate var isValid: Bool { [pid != nil, ancestor != nil, token != nil].filter { $0 }.count <= 1 }
}

/// The wait options as given, checked as `WaitOptions.validate` checks them.
private struct PartialWait {
    package var shared = false
    package var wait: String?
    package var noWait = false
    package var conflictExitCode: Int32?

    package var spec: WaitSpec? {
        let seconds = wait.flatMap { secondsValue($0) }
        let code = conflictExitCode ?? Exit.conflict
        guard !(noWait && wait != nil), wait == nil || seconds != nil, (1...255).contains(code) else { return nil }
        return WaitSpec(
            mode: shared ? .shared : .exclusive, seconds: noWait ? 0 : seconds.flatMap { $0.isInfinite ? nil : $0 },
            conflictExitCode: code)
    }
}

/// Walks the arguments. Each matcher returns whether it took `token` (and the value after it); a
/// token no matcher takes, or a matcher that finds the shape unusual, ends the quick path.
private struct Reader {
    private let arguments: [String]
    private var index = 0
    /// Set once the shape is one argument-parser must judge; every matcher then declines.
    private var unusual = false
    private var seen: Set<String> = []

    package init(_ arguments: [String]) { self.arguments = arguments }

    /// Whether every argument was taken in a plain shape.
    package var finished: Bool { index == arguments.count && !unusual }

    package mutating func next() -> String? {
        guard !unusual, index < arguments.count else { return nil }
        defer { index += 1 }
        return arguments[index]
    }

    package mutating func rest() -> [String] {
        defer { index = arguments.count }
        return Array(arguments[index...])
    }

    /// Takes the next argument if it is lockctl's own option.
    package mutating func daemon(_ daemon: inout DaemonAddress) -> Bool {
        guard !unusual, index < arguments.count else { return false }
        index += 1
        if self.daemon(arguments[index - 1], &daemon) { return true }
        index -= 1
        return false
    }

    package mutating func daemon(_ token: String, _ daemon: inout DaemonAddress) -> Bool {
        value(token, "--socket", &daemon.socket) || value(token, "--daemon-timeout", &daemon.daemonTimeout)
    }

    /// The one positional argument (a lock name).
    package mutating func positional(_ token: String, _ slot: inout String?) -> Bool {
        guard !token.hasPrefix("-"), !token.isEmpty else { return false }
        guard slot == nil else { return decline() }
        slot = token
        return true
    }

    package mutating func flag(_ token: String, _ name: String, _ slot: inout Bool) -> Bool {
        guard token == name else { return false }
        guard seen.insert(name).inserted else { return decline() }
        slot = true
        return true
    }

    /// `--name VALUE` or `--name=VALUE`. An `unconditional` option takes whatever follows (as
    /// argument-parser's `.unconditional` does); another one declines a value that looks like an
    /// option.
    package mutating func value(_ token: String, _ name: String, _ slot: inout String?, unconditional: Bool = false)
        -> Bool
    {
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

    /// `--name VALUE` read by `convert`; a value it refuses leaves the line to argument-parser.
    package mutating func value<Value>(
        _ token: String, _ name: String, _ slot: inout Value?, _ convert: (String) -> Value?
    ) -> Bool {
        var text: String?
        guard value(token, name, &text) else { return false }
        guard let converted = text.flatMap(convert) else { return decline() }
        slot = converted
        return true
    }

    package mutating func wait(_ token: String, _ wait: inout PartialWait) -> Bool {
        value(token, "--conflict-exit-code", &wait.conflictExitCode, { Int32($0) })
            || flag(token, "--shared", &wait.shared) || flag(token, "--no-wait", &wait.noWait)
            || value(token, "--wait", &wait.wait, unconditional: true)
    }

    package mutating func owner(_ token: String, _ owner: inout OwnerChoice) -> Bool {
        value(token, "--pid", &owner.pid, { Int32($0) })
            || value(token, "--owner", &owner.ancestor, { Ancestor(rawValue: $0) })
            || value(token, "--token", &owner.token)
    }

    private mutating func decline() -> Bool {
        unusual = true
        return false
    }
}
