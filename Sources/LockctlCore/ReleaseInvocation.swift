import LockCore
import LockProtocol

/// `lockctl release`, read by either reader and validated.
package struct ReleaseInvocation: Invocation {
    package var name: String
    package var all = false
    package var owner = OwnerChoice()
    package var json = false
    package var daemon = DaemonAddress()

    package init(
        name: String, all: Bool = false, owner: OwnerChoice = OwnerChoice(), json: Bool = false,
        daemon: DaemonAddress = DaemonAddress()
    ) {
        self.name = name
        self.all = all
        self.owner = owner
        self.json = json
        self.daemon = daemon
    }

    package func run() throws {
        failuresAsJSON = json
        let context = "release \"\(name)\""
        let lock = try lockName(name, context)
        let owner = try owner.spec(context)
        let connection = try daemon.connect(context)
        let answer = try call(connection, context, .release(lock: lock, owner: owner, all: all))
        if json { printLine(JSONValue.object([("count", answer.count.map(JSONValue.int) ?? .null)]).serialized) }
    }
}
