import Foundation
import LockClient

/// What one load step measured: pairs (two round trips each) over all clients.
struct LoadResult {
    var clients: Int
    var pairs: Int
    var seconds: Double
    /// Whole-pair latencies, and (for lock pairs) the first round trip alone: the wait.
    var pairLatencies: [Double]
    var firstLatencies: [Double]
    /// When each measured first round trip was answered, and to which client, in time order. On
    /// one exclusive lock that is a grant, and the holder sends its release at that same instant,
    /// so the gaps between consecutive grants to two different clients are the hand-offs: release
    /// sent by one client to grant read by the next. (A client that takes the lock again before
    /// anyone else does has handed nothing off.)
    var firstAnswered: [(time: Double, client: Int)]
    var failures: Int
    /// CPU time the server process spent per measured pair (all its threads), when known.
    var serverCPUPerPair: Double?
    /// The share of that time spent in user space (the rest is the kernel's), when known.
    var serverUserShare: Double?

    var perSecond: Double { Double(pairs) / seconds }
    func pairPercentile(_ p: Double) -> Double { Self.percentile(pairLatencies, p) }
    func firstPercentile(_ p: Double) -> Double { Self.percentile(firstLatencies, p) }
    /// Sorted hand-off times (meaningful for clients contending for one exclusive lock).
    var handOffs: [Double] {
        zip(firstAnswered.dropFirst(), firstAnswered).compactMap { next, previous in
            next.client == previous.client ? nil : next.time - previous.time
        }.sorted()
    }

    static func percentile(_ sorted: [Double], _ p: Double) -> Double {
        guard !sorted.isEmpty else { return .nan }
        return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
    }
}

/// Runs `clients` threads, each with its own connection, doing `first` then `second` round trips
/// in a loop for `seconds` (after a short warm-up), pipelining off. Client `i` talks to
/// `paths[i % paths.count]`.
func runLoad(
    clients: Int, seconds: Double, path: String, paths: [String]? = nil, serverPID: Int32? = nil,
    serverThread: Int32? = nil, setup: (@Sendable (Int) -> [UInt8])? = nil,
    requests: @escaping @Sendable (Int) -> (first: [UInt8], firstOK: [UInt8], second: [UInt8], secondOK: [UInt8])
) -> LoadResult {
    runPairs(clients: clients, seconds: seconds, serverPID: serverPID, serverThread: serverThread) { index in
        guard let client = RawLineClient(path: paths.map { $0[index % $0.count] } ?? path) else { return nil }
        let (first, firstOK, second, secondOK) = requests(index)
        // A request each client makes once before the loop, such as taking a lock of its own.
        if let setup { client.roundTrip(setup(index), expect: []) }
        return ({ client.roundTrip(first, expect: firstOK) }, { client.roundTrip(second, expect: secondOK) })
    }
}

/// Runs `clients` threads, each doing its `first` then its `second` call in a loop for `seconds`
/// (after a short warm-up); `makeClient` (called on the client's thread) connects and returns the
/// two calls, or `nil` when it cannot.
func runPairs(
    clients: Int, seconds: Double, serverPID: Int32? = nil, serverThread: Int32? = nil,
    makeClient: @escaping @Sendable (Int) -> (first: () -> Bool, second: () -> Bool)?
) -> LoadResult {
    final class Results: @unchecked Sendable {
        let lock = NSLock()
        var pairs = 0
        var failures = 0
        var pairLatencies: [Double] = []
        var firstLatencies: [Double] = []
        var firstAnswered: [(time: Double, client: Int)] = []
    }
    let results = Results()
    let ready = DispatchGroup()
    let go = DispatchSemaphore(value: 0)
    let done = DispatchGroup()
    let warmUp = min(0.5, seconds / 4)
    for index in 0..<clients {
        ready.enter()
        done.enter()
        Thread.detachNewThread {
            defer { done.leave() }
            guard let (first, second) = makeClient(index) else {
                ready.leave()
                return
            }
            ready.leave()
            go.wait()
            let start = LockConnection.monotonicSeconds()
            let measureFrom = start + warmUp
            let stop = measureFrom + seconds
            var pairs = 0
            var failures = 0
            var pairLatencies: [Double] = []
            var firstLatencies: [Double] = []
            var firstAnswered: [(time: Double, client: Int)] = []
            pairLatencies.reserveCapacity(100_000)
            firstLatencies.reserveCapacity(100_000)
            firstAnswered.reserveCapacity(100_000)
            while true {
                let before = LockConnection.monotonicSeconds()
                if before >= stop { break }
                let okFirst = first()
                let middle = LockConnection.monotonicSeconds()
                let okSecond = second()
                let after = LockConnection.monotonicSeconds()
                guard before >= measureFrom else { continue }
                if okFirst && okSecond {
                    pairs += 1
                    pairLatencies.append(after - before)
                    firstLatencies.append(middle - before)
                    firstAnswered.append((middle, index))
                } else {
                    failures += 1
                }
            }
            results.lock.withLock {
                results.pairs += pairs
                results.failures += failures
                results.pairLatencies += pairLatencies
                results.firstLatencies += firstLatencies
                results.firstAnswered += firstAnswered
            }
        }
    }
    ready.wait()
    for _ in 0..<clients { go.signal() }
    usleep(UInt32(warmUp * 1e6))
    // A server process, or one thread of this one (the epoll floor).
    let root = serverPID.map { "/proc/\($0)" } ?? serverThread.map { "/proc/self/task/\($0)" }
    let cpuBefore = root.flatMap(cpuSeconds(at:))
    let ticksBefore = root.flatMap(cpuTicks(at:))
    done.wait()
    let cpuAfter = root.flatMap(cpuSeconds(at:))
    let ticksAfter = root.flatMap(cpuTicks(at:))
    var cpu: Double?
    if let cpuBefore, let cpuAfter { cpu = cpuAfter - cpuBefore }
    var userShare: Double?
    if let ticksBefore, let ticksAfter {
        let user = Double(ticksAfter.user - ticksBefore.user)
        let system = Double(ticksAfter.system - ticksBefore.system)
        if user + system > 0 { userShare = user / (user + system) }
    }
    return LoadResult(
        clients: clients, pairs: results.pairs, seconds: seconds, pairLatencies: results.pairLatencies.sorted(),
        firstLatencies: results.firstLatencies.sorted(),
        firstAnswered: results.firstAnswered.sorted { $0.time < $1.time },
        failures: results.failures, serverCPUPerPair: cpu.map { $0 / Double(max(1, results.pairs)) },
        serverUserShare: userShare)
}

/// CPU time a process (`/proc/PID`, all its threads) or one thread (`/proc/self/task/TID`) has
/// run so far, from the scheduler's nanosecond counters (`schedstat`, first field).
func cpuSeconds(at root: String) -> Double? {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "\(root)/task")).map {
        $0.map { "\(root)/task/\($0)" }
    }
    var nanos: UInt64 = 0
    for task in tasks ?? [root] {
        guard let text = try? String(contentsOfFile: "\(task)/schedstat", encoding: .utf8),
            let first = text.split(separator: " ").first, let value = UInt64(first)
        else { continue }
        nanos += value
    }
    return Double(nanos) / 1e9
}

/// A process's user and system CPU time so far in clock ticks (`/proc/PID/stat`, fields 14
/// and 15): coarse (10 ms), but enough to split a step's CPU time between user space and kernel.
func cpuTicks(at root: String) -> (user: Int, system: Int)? {
    guard let text = try? String(contentsOfFile: "\(root)/stat", encoding: .utf8),
        let afterName = text.range(of: ") ", options: .backwards)
    else { return nil }
    // Fields from the third on; utime and stime are the 14th and 15th.
    let fields = text[afterName.upperBound...].split(separator: " ")
    guard fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]) else { return nil }
    return (user, system)
}
