import Glibc
import LockCore
import LockProtocol
import Logging
import NIOCore
import NIOEmbedded

/// What a fuzzing run did.
package struct SimulationReport: Sendable {
    package var steps = 0
    package var requests = 0
    package var answers = 0
    package var grants = 0
    package var timeAdvances = 0
    package var processExits = 0
    package var reloads = 0
    package var stops = 0
    package var crashes = 0

    package init() {}

    /// One line of totals.
    package var summary: String {
        let parts = [
            "\(steps) steps", "\(requests) requests", "\(answers) answers", "\(grants) grants",
            "\(timeAdvances) time advances", "\(processExits) process exits", "\(reloads) reloads", "\(stops) stops",
            "\(crashes) crash restarts",
        ]
        return parts.joined(separator: ", ")
    }

    package mutating func add(_ other: SimulationReport) {
        steps += other.steps
        requests += other.requests
        answers += other.answers
        grants += other.grants
        timeAdvances += other.timeAdvances
        processExits += other.processExits
        reloads += other.reloads
        stops += other.stops
        crashes += other.crashes
    }
}

/// A broken promise the fuzzer found, with what it takes to replay it.
package struct SimulationFailure: Error, CustomStringConvertible {
    package var seed: UInt64
    package var step: Int
    package var problem: String
    /// The last steps before the failure, oldest first.
    package var recentSteps: [String]

    package var description: String {
        "seed \(seed), step \(step): \(problem)\nlast steps:\n" + recentSteps.map { "  \($0)" }.joined(separator: "\n")
    }
}

/// The whole-service fuzzer: the real ``LockService`` with its real connection handler, line
/// decoder, journal and timers, on an embedded event loop whose clock only moves when the fuzzer
/// says, fed random steps from several simulated connections (requests, partial lines, closes,
/// time, process exits, reloads, stops and crash restarts). After every step it checks what the
/// engine and the daemon promise (docs/fuzzing.md). A seed names one run exactly.
package final class ServiceSimulation {
    private let seed: UInt64
    private var random: SplitMix
    private var generator: RequestGenerator
    private let root: String
    private let loop = EmbeddedEventLoop()
    private let processes = SimulatedProcesses()
    private let logger = Logger(label: "lockd-fuzz") { _ in SwiftLogNoOpLogHandler() }
    private let wallBase = 1_796_000_000.0
    private var service: LockService!
    private var generation = 0
    private var journalPath = ""
    private var mirror = JournalMirror()
    private var clients: [SimulatedClient] = []
    private var nextPid: Int32 = 1000
    private var shells: [Int32] = []
    /// The largest fence any answer showed (fences only grow, across restarts too).
    private var largestFence: Int64 = 0
    private var report = SimulationReport()
    private var history: [String] = []

    /// A run for `seed`, keeping its state journals under `directory` (removed at the end).
    package init(seed: UInt64, directory: String) throws {
        self.seed = seed
        self.random = SplitMix(seed: seed)
        self.generator = RequestGenerator(random: SplitMix(seed: seed ^ 0x5EED))
        self.root = directory + "/fuzz-\(seed)"
        for pid: Int32 in [1, 500, 501] {
            processes.spawn(pid, parent: 1, uid: pid == 501 ? 1000 : 0)
            if pid != 1 { shells.append(pid) }
        }
        try startService(from: nil)
    }

    deinit {
        tearDown()
        service.abandon()
        _ = remove(root)
    }

    /// Runs `steps` random steps, checking after each.
    package func run(steps: Int) throws(SimulationFailure) -> SimulationReport {
        for step in 1...max(1, steps) {
            let description = takeStep()
            history.append(description)
            if history.count > 24 { history.removeFirst() }
            loop.run()
            report.steps += 1
            if let problem = collectAnswers() ?? checkInvariants() {
                throw SimulationFailure(seed: seed, step: step, problem: problem, recentSteps: history)
            }
        }
        return report
    }

    // MARK: - Steps

    private func takeStep() -> String {
        if case .finished = service.lifecycle {
            // A stop has completed: a new lockd starts from the journal, as systemd would start one.
            let journal = readFile(journalPath)
            tearDown()
            do {
                try startService(from: journal)
            } catch {
                return "stopped; restart failed: \(error)"
            }
            return "stopped; restart"
        }
        if clients.isEmpty || random.oneIn(25) { return openClient() }
        let roll = random.next(below: 1000)
        switch roll {
        case 0..<700:
            return sendRequest(to: random.pick(clients))
        case 700..<710:
            let client = random.pick(clients)
            let cut = random.next(below: 20)
            let (line, _) = generator.line(
                id: client.nextID(), pending: client.pending, pids: pids(for: client), held: client.held)
            _ = try? client.channel.writeInbound(buffer(String(decoding: line.utf8.prefix(cut), as: UTF8.self)))
            return "client \(client.pid): partial line"
        case 710..<760:
            return closeClient(random.pick(clients), halfClose: random.oneIn(3))
        case 760..<900:
            return advanceTime()
        case 900..<950:
            return exitProcess()
        case 950..<980:
            report.reloads += 1
            service.apply(randomConfiguration())
            return "reload"
        default:
            // Stops and crashes are rare, so that locks and queues build up between them.
            if random.oneIn(3), case .running = service.lifecycle {
                report.stops += 1
                service.beginShutdown()
                return "stop"
            }
            return random.oneIn(3) ? crash() : advanceTime()
        }
    }

    private func openClient() -> String {
        let pid = nextPid
        nextPid += 1
        let uid: UInt32 = random.pick([0, 1000, 1000, 1001])
        processes.spawn(pid, parent: random.pick(shells), uid: uid)
        let identity = ClientIdentity(pid: pid, uid: uid, gid: uid)
        let channel = EmbeddedChannel(loop: loop)
        let service = self.service!
        try? channel.pipeline.syncOperations.addHandlers(ConnectionHandler.handlers(for: service, identity: identity))
        channel.connect(to: try! SocketAddress(unixDomainSocketPath: "/fuzz"), promise: nil)
        clients.append(SimulatedClient(channel: channel, pid: pid, uid: uid))
        return "open client \(pid) uid \(uid)"
    }

    private func sendRequest(to client: SimulatedClient) -> String {
        let id = random.oneIn(10) && !client.pending.isEmpty ? random.pick(client.pending) : client.nextID()
        let (line, hold) = generator.line(id: id, pending: client.pending, pids: pids(for: client), held: client.held)
        report.requests += 1
        if let hold {
            if line.contains("\"op\":\"acquire\"") { client.pending.append(id) }
            client.asked[id] = hold
        }
        let ending = random.oneIn(20) ? "\r\n" : "\n"
        _ = try? client.channel.writeInbound(buffer(line + ending))
        return "client \(client.pid): \(line.prefix(160))"
    }

    private func closeClient(_ client: SimulatedClient, halfClose: Bool) -> String {
        if halfClose {
            client.channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
            return "client \(client.pid): half-close"
        }
        _ = try? client.channel.close().wait()
        return "client \(client.pid): close"
    }

    private func advanceTime() -> String {
        report.timeAdvances += 1
        let nanos: Int64 = random.pick([
            0, 1_000_000, 50_000_000, 200_000_000, 1_000_000_000, 3_000_000_000, 31_000_000_000, 3_600_000_000_000,
            100_000_000_000_000_000, Int64.max / 2,
        ])
        loop.advanceTime(by: .nanoseconds(nanos))
        return "advance \(nanos) ns"
    }

    private func exitProcess() -> String {
        report.processExits += 1
        if random.oneIn(3), let shell = shells.randomElement(using: &random) {
            // A shell exits and its pid comes back as a new process: a pid reuse.
            processes.exit(shell)
            processes.spawn(shell, parent: 1, uid: random.pick([0, 1000]))
            return "shell \(shell) exits, pid reused"
        }
        guard let client = clients.randomElement(using: &random), processes.running[client.pid] != nil else {
            return "no process to end"
        }
        processes.exit(client.pid)
        return "process \(client.pid) exits"
    }

    /// kill -9 of lockd: only what the journal synced survives; a new lockd restores it.
    private func crash() -> String {
        report.crashes += 1
        let snapshot = readFile(journalPath)
        tearDown()
        service.abandon()
        do {
            try startService(from: snapshot)
        } catch {
            return "crash; restart failed: \(error)"
        }
        return "crash and restart"
    }

    private func tearDown() {
        for client in clients { _ = try? client.channel.close().wait() }
        clients = []
        loop.run()
    }

    // MARK: - The service's lives

    private func startService(from journal: [UInt8]?) throws {
        generation += 1
        let directory = root + "/\(generation)"
        let old = journalPath
        journalPath = directory + "/" + StateJournal.fileName
        if let journal {
            guard (try? FileSystem.makeDirectories(directory, mode: 0o700)) != nil, writeFile(journalPath, journal)
            else {
                throw SimulationFailure(seed: seed, step: 0, problem: "cannot write \(journalPath)", recentSteps: [])
            }
        }
        if !old.isEmpty { _ = remove(String(old.dropLast(StateJournal.fileName.count + 1))) }
        let (stateJournal, contents) = try StateJournal.open(directory: directory)
        let wallBase = self.wallBase
        let loop = self.loop
        service = LockService(
            loop: loop, logger: logger, configuration: randomConfiguration(), notifier: SystemdNotifier(),
            processes: processes, wallClock: { wallBase + Double(loop.now.uptimeNanoseconds) / 1e9 })
        try service.restore(from: contents, journal: stateJournal)
        mirror = JournalMirror()
    }

    private func randomConfiguration() -> LockdConfiguration {
        var configuration = LockdConfiguration()
        var limits = configuration.limits
        limits.maxClients = 2 + random.next(below: 8)
        limits.maxPendingPerConnection = 1 + random.next(below: 6)
        limits.maxHoldsPerUID = 1 + random.next(below: 12)
        limits.maxWaitersPerUID = 1 + random.next(below: 12)
        limits.maxLineBytes = random.pick([256, 512, 65536])
        limits.maxNameBytes = random.oneIn(5) ? random.pick([1, 3]) : 255
        let durations: [Double?] = [nil, 0, 0.5, 5, 3600, 1e300, .leastNonzeroMagnitude]
        limits.defaultWait = random.pick(durations)
        limits.maxWait = random.pick(durations)
        limits.defaultTTL = random.pick(durations).map { $0 == 0 ? 1 : $0 }
        limits.maxTTL = random.pick(durations).map { $0 == 0 ? 2 : $0 }
        limits.lineTimeout = random.pick([1, 10, 1e300, .leastNonzeroMagnitude])
        limits.writeTimeout = random.pick([1, 10, 1e300])
        configuration.limits = limits
        configuration.shutdownGrace = random.pick([0, 1, 30, 1e300])
        if random.oneIn(3) {
            var rule = AccessPolicy.Rule(locks: "d/*")
            rule.acquire = AccessPolicy.Principals(uids: [1000])
            rule.status = AccessPolicy.Principals(gids: [4242])
            configuration.access.rules = [rule]
            configuration.access.breakers = AccessPolicy.Principals(uids: [1001])
        }
        return configuration
    }

    // MARK: - Checks

    /// Reads every client's answers: each line must be a JSON object that is an answer or an
    /// event, and fresh grants must carry fences above every fence seen before.
    private func collectAnswers() -> String? {
        var fresh: [(lock: String, fence: Int64)] = []
        for client in clients {
            while let chunk = try? client.channel.readOutbound(as: ByteBuffer.self) {
                client.output += chunk.readableBytesView
            }
            while let newline = client.output.firstIndex(of: UInt8(ascii: "\n")) {
                let line = client.output[..<newline]
                client.output.removeSubrange(...newline)
                report.answers += 1
                guard let answer = try? JSONValue.parse(line), case .object = answer else {
                    return
                        "client \(client.pid) got a line that is no JSON object: \(String(decoding: line, as: UTF8.self))"
                }
                if answer["event"] == "changed" {
                    // A watcher's event carries the lock's state as status lists it, or nothing.
                    guard let locks = answer["locks"]?.elements, locks.count <= 1,
                        locks.allSatisfy({ $0["name"] == answer["lock"] })
                    else { return "a changed event that does not describe its lock: \(answer.serialized)" }
                    continue
                }
                if answer["event"] != nil {
                    let lock = answer["lock"]?.serialized
                    client.held.removeAll { $0.lock == lock }
                    continue
                }
                guard let ok = answer["ok"]?.bool, let id = answer["id"] else { return "malformed answer \(answer)" }
                client.pending.removeAll { $0 == id.serialized }
                if ok, let hold = client.asked.removeValue(forKey: id.serialized) {
                    if answer["fence"] == nil {
                        if case .int(0)? = answer["count"] { client.held.removeAll { $0 == hold } }
                    } else if !client.held.contains(hold) {
                        client.held.append(hold)
                    }
                }
                if !ok {
                    guard let code = answer["error"]?["code"]?.string, Self.errorCodes.contains(code) else {
                        return "an error without a known code: \(answer)"
                    }
                    continue
                }
                if case .int(let fence)? = answer["fence"], case .int(let count)? = answer["count"] {
                    report.grants += 1
                    if count == 1 { fresh.append((answer["lock"]?.string ?? "?", fence)) }
                }
            }
        }
        fresh.sort { $0.fence < $1.fence }
        for (index, grant) in fresh.enumerated() {
            if grant.fence <= largestFence || (index > 0 && grant.fence == fresh[index - 1].fence) {
                return "lock \(grant.lock) was granted fence \(grant.fence), not above \(largestFence)"
            }
        }
        largestFence = max(largestFence, fresh.last?.fence ?? 0)
        clients.removeAll { !$0.channel.isActive }
        return nil
    }

    private static let errorCodes: Set<String> = [
        "invalid", "busy", "timeout", "deadlock", "cancelled", "not_held", "denied", "too_large", "limit",
        "shutting_down",
    ]

    private func checkInvariants() -> String? {
        let table = service.inspectTable { $0 }
        if let problem = table.invariantViolations().first { return problem }
        for client in clients {
            guard client.channel.isActive, let session = sessionID(of: client) else { continue }
            let queued = Set(table.waiting(session: session).map(\.tag))
            let answering = Set(service.connections[session]?.pending.keys.map { $0 } ?? [])
            if queued != answering { return "session \(session) waits for \(queued), expects answers for \(answering)" }
        }
        for lock in table.status() {
            for holder in lock.holders {
                if case .session(let id) = holder.owner, service.connections[id] == nil {
                    return "lock \(lock.name) is held by closed session \(id)"
                }
            }
        }
        return checkJournal(table)
    }

    /// Whenever nothing waits for the disk, replaying the journal must give the table's durable
    /// part exactly.
    private func checkJournal(_ table: LockTable) -> String? {
        guard !service.persistence.hasUnsyncedChanges, !service.persistence.commitScheduled else { return nil }
        mirror.update(from: journalPath)
        var names = Set(table.locksWithDurableHolds)
        names.formUnion(mirror.contents.locks.keys.compactMap(LockName.init))
        for name in names {
            let journaled = mirror.contents.locks[name.rawValue].map { StateRecords.holds(of: $0).holds.map(\.hold) }
            let live = table.durableHolds(of: name)
            if journaled ?? [] != live {
                return "the journal says \(journaled ?? []) of lock \(name), the table \(live)"
            }
        }
        return nil
    }

    private func sessionID(of client: SimulatedClient) -> SessionID? {
        service.connections.all.first { $0.identity.pid == client.pid }?.id
    }

    private func pids(for client: SimulatedClient) -> [Int32] {
        [client.pid, client.pid, processes.running[client.pid]?.parent ?? 1, 1, 99_999] + clients.map(\.pid)
    }

    private func buffer(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }
}

/// One simulated connection and what the fuzzer knows of it.
private final class SimulatedClient {
    let channel: EmbeddedChannel
    let pid: Int32
    let uid: UInt32
    var counter = 0
    /// Ids of acquires sent and not answered yet, as JSON text.
    var pending: [String] = []
    /// What each unanswered acquire asked for, by id.
    var asked: [String: RequestGenerator.Hold] = [:]
    /// What the client believes it holds (a guess: enough to aim releases and shields).
    var held: [RequestGenerator.Hold] = []
    var output: [UInt8] = []

    init(channel: EmbeddedChannel, pid: Int32, uid: UInt32) {
        self.channel = channel
        self.pid = pid
        self.uid = uid
    }

    func nextID() -> String {
        counter += 1
        return "\(counter)"
    }
}

/// The journal read as a new lockd would, incrementally: new whole records are read as they
/// are synced, and the whole file again after a compaction replaced it.
private struct JournalMirror {
    var contents = StateJournal.Contents()
    private var offset = 0
    private var inode: ino_t = 0

    mutating func update(from path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return }
        if info.st_ino != inode || Int(info.st_size) < offset {
            self = JournalMirror()
            inode = info.st_ino
        }
        guard Int(info.st_size) > offset else { return }
        let bytes = readFile(path)
        guard bytes.count > offset else { return }
        offset += StateJournal.read(bytes[offset...], into: &contents)
    }
}

private func readFile(_ path: String) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return [] }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { break }
        bytes += chunk[..<count]
    }
    return bytes
}

private func writeFile(_ path: String, _ bytes: [UInt8]) -> Bool {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    return bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == bytes.count
}

/// Removes a directory tree of plain files (the fuzzer's own).
private func remove(_ path: String) -> Bool {
    guard let directory = opendir(path) else { return unlink(path) == 0 }
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name == "." || name == ".." { continue }
        _ = remove(path + "/" + name)
    }
    closedir(directory)
    return rmdir(path) == 0
}
