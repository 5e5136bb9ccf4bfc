import LockCore
public import LockProtocol

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// A blocking protocol-v1 connection to lockd over its Unix socket.
///
/// Blocking I/O keeps `lockctl` small and quick to start; the file descriptor is public so a
/// caller can `poll` it together with signals and child processes.
public final class LockConnection {
    /// The connected socket.
    public let fd: Int32
    /// The socket path this connection reached.
    public let path: String
    private var buffer: [UInt8] = []
    private var nextID: Int64 = 1
    /// Lines read while waiting for another answer (pushed events, other answers), as JSON.
    public private(set) var backlog: [JSONValue] = []

    /// Connects to `path`.
    /// - Throws: ``ClientError`` with kind `unreachable` or `permissionDenied`.
    public init(path: String) throws(ClientError) {
        self.path = path
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ClientError(.unreachable, "cannot create a socket: \(Self.errnoText())") }
        guard let result = UnixSocketAddress.with(path: path, { Glibc.connect(fd, $0, $1) }) else {
            close(fd)
            throw ClientError(.unreachable, "socket path is too long: \(path)")
        }
        guard result == 0 else {
            let code = errno
            close(fd)
            if code == EACCES || code == EPERM {
                throw ClientError(.permissionDenied, "permission denied connecting to lockd at \(path)")
            }
            var info = stat()
            if code == ECONNREFUSED, stat(path, &info) == 0, info.st_mode & S_IFMT != S_IFSOCK {
                throw ClientError(.unreachable, "\(path) is not a socket (is --socket or $LOCKD_SOCKET right?)")
            }
            throw ClientError(
                .unreachable, "lockd is not running at \(path) (\(String(cString: strerror(code))))")
        }
        self.fd = fd
    }

    deinit { close(fd) }

    /// Connects to the first of `paths` where a lockd answers (see ``SocketPath/candidates(_:)``).
    /// - Throws: the first path's error when it is anything but "nothing there"; else an
    ///   `unreachable` error that names every path tried.
    public static func connect(toFirstOf paths: [String]) throws(ClientError) -> LockConnection {
        var missing: [String] = []
        for path in paths {
            do {
                return try LockConnection(path: path)
            } catch  where error.kind == .unreachable && paths.count > 1 {
                missing.append(path)
            }
        }
        throw ClientError(.unreachable, "lockd is not running (tried \(missing.joined(separator: ", ")))")
    }

    /// Sends a request; returns the id it was given.
    @discardableResult
    public func send(_ operation: Operation) throws(ClientError) -> RequestID {
        let id = nextRequestID()
        try send(Request(id: id, operation: operation).json)
        return id
    }

    /// A fresh id for a request, also for one built by hand.
    public func nextRequestID() -> RequestID {
        defer { nextID += 1 }
        return .int(nextID)
    }

    /// Sends one JSON line as it is: for tools and tests that speak the protocol by hand.
    public func send(_ message: JSONValue) throws(ClientError) {
        var bytes: [UInt8] = []
        message.write(to: &bytes)
        bytes.append(UInt8(ascii: "\n"))
        try sendRaw(bytes)
    }

    /// Sends bytes as they are.
    public func sendRaw(_ bytes: [UInt8]) throws(ClientError) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            }
            if written < 0 {
                if errno == EINTR { continue }
                let reason = Self.errnoText()
                // lockd may have said why before it closed (too many clients, stopping).
                if let refusal = refusalBeforeClose() { throw refusal }
                throw ClientError(.connectionLost, "lost the connection to lockd at \(path): \(reason)")
            }
            offset += written
        }
    }

    /// Reads the next line as JSON, waiting at most `timeout` seconds (`nil`: forever): for tools
    /// and tests that speak the protocol by hand.
    /// - Returns: the line, or `nil` when the time ran out.
    public func readJSON(timeout: Double? = nil) throws(ClientError) -> JSONValue? {
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = buffer[..<newline]
                defer { buffer.removeSubrange(...newline) }
                do {
                    return try JSONValue.parse(line)
                } catch {
                    throw ClientError(.badResponse, "lockd at \(path) sent a line that is not JSON")
                }
            }
            if let timeout {
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let ready = poll(&pfd, 1, Int32(Seconds.clamped(timeout) * 1000))
                if ready == 0 { return nil }
                if ready < 0, errno != EINTR { throw ClientError(.connectionLost, Self.errnoText()) }
                if ready < 0 { continue }
            }
            guard try fill() else {
                throw ClientError(.connectionLost, "lockd at \(path) closed the connection")
            }
        }
    }

    /// The connection-level error line (`"id": null`) lockd wrote before it closed, if any.
    private func refusalBeforeClose() -> ClientError? {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if count <= 0 { break }
            buffer.append(contentsOf: chunk[..<count])
        }
        for line in buffer.split(separator: UInt8(ascii: "\n")) {
            if let json = try? JSONValue.parse(line), let refusal = Self.refusal(json) { return refusal }
        }
        return nil
    }

    /// An answer with `"id": null` and an error after which lockd closes the connection (too many
    /// clients, stopping, a line too long or too slow). An `invalid` line keeps the connection.
    private static func refusal(_ json: JSONValue) -> ClientError? {
        guard json["id"] == .null, json["ok"] == false, let wire = json["error"]?["code"]?.string,
            let code = LockError.Code(wire: wire), [.limit, .shuttingDown, .tooLarge, .timeout].contains(code)
        else { return nil }
        return ClientError(.refused, json["error"]?["message"]?.string ?? wire, code: code)
    }

    /// Reads the next answer or event, waiting at most `timeout` seconds (`nil`: forever).
    /// - Returns: the message, or `nil` when the time ran out.
    public func readMessage(timeout: Double? = nil) throws(ClientError) -> ServerMessage? {
        guard let json = try readJSON(timeout: timeout) else { return nil }
        return try message(json)
    }

    private func message(_ json: JSONValue) throws(ClientError) -> ServerMessage {
        do {
            return try ServerMessage(json)
        } catch {
            throw ClientError(.badResponse, "lockd at \(path) sent \(error.description)")
        }
    }

    /// Reads what the socket has (blocking until something arrives); `false` at end of stream.
    private func fill() throws(ClientError) -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0 {
                if errno == EINTR { continue }
                throw ClientError(.connectionLost, "lost the connection to lockd at \(path): \(Self.errnoText())")
            }
            if count == 0 { return false }
            buffer.append(contentsOf: chunk[..<count])
            return true
        }
    }

    /// Removes and returns the oldest message in ``backlog``.
    public func takeBacklog() throws(ClientError) -> ServerMessage? {
        backlog.isEmpty ? nil : try message(backlog.removeFirst())
    }

    /// Removes and returns the oldest line in ``backlog`` as JSON.
    public func takeRawBacklog() -> JSONValue? {
        backlog.isEmpty ? nil : backlog.removeFirst()
    }

    /// Whether a complete message is already buffered (so `poll` on ``fd`` would not show it).
    public var hasBufferedMessage: Bool { buffer.contains(UInt8(ascii: "\n")) }

    /// Waits for the answer to `id`; messages read meanwhile go to ``backlog``.
    public func answer(to id: RequestID, timeout: Double? = nil) throws(ClientError) -> Answer {
        guard case .answer(let answer) = try message(response(to: id, timeout: timeout)) else {
            throw ClientError(.badResponse, "lockd at \(path) sent an event in place of an answer")
        }
        return answer
    }

    /// Waits for the answer line to `id`, as JSON; lines read meanwhile go to ``backlog``.
    public func response(to id: RequestID, timeout: Double? = nil) throws(ClientError) -> JSONValue {
        if let index = backlog.firstIndex(where: { $0["id"].flatMap(RequestID.init) == id }) {
            return backlog.remove(at: index)
        }
        let deadline = timeout.map { Self.monotonicSeconds() + Seconds.clamped($0) }
        while true {
            let remaining = deadline.map { max(0, $0 - Self.monotonicSeconds()) }
            guard let line = try readJSON(timeout: remaining) else {
                throw ClientError(.timedOut, "lockd at \(path) did not answer in time")
            }
            if line["event"] == nil, line["id"].flatMap(RequestID.init) == id { return line }
            if let refusal = Self.refusal(line) { throw refusal }
            backlog.append(line)
        }
    }

    /// Sends a request and waits for its answer.
    public func call(_ operation: Operation, timeout: Double? = nil) throws(ClientError) -> Answer {
        let id = try send(operation)
        return try answer(to: id, timeout: timeout)
    }

    /// Seconds on the monotonic clock.
    public static func monotonicSeconds() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }

    static func errnoText() -> String { String(cString: strerror(errno)) }
}
