import ExtrasBase64
import LockProtocol
import NIOCore

/// The part of etcd's v3 API that lockd uses: leases, guarded transactions, ranges and watches
/// over a key prefix. Keys and values are bytes (base64 on the wire) and 64-bit numbers are JSON
/// strings, as the gateway writes them. Confined to the transport's loop.
public final class EtcdClient {
    public let transport: any EtcdTransport
    /// How long a unary call may take before the member is given up for the next.
    public var timeout: TimeAmount

    public init(transport: any EtcdTransport, timeout: TimeAmount = .seconds(2)) {
        self.transport = transport
        self.timeout = timeout
    }

    public var loop: any EventLoop { transport.loop }

    /// One key as etcd holds it.
    public struct KeyValue: Sendable, Equatable {
        public var key: [UInt8]
        public var value: [UInt8]
        public var createRevision: Int64
        public var modRevision: Int64
        public var lease: Int64

        public init(key: [UInt8], value: [UInt8], createRevision: Int64, modRevision: Int64, lease: Int64) {
            self.key = key
            self.value = value
            self.createRevision = createRevision
            self.modRevision = modRevision
            self.lease = lease
        }
    }

    /// A watch event.
    public enum Event: Sendable, Equatable {
        case put(KeyValue)
        case delete(key: [UInt8], revision: Int64)
    }

    // MARK: - Leases

    /// Grants a lease; returns its id and the ttl etcd gave (at least its minimum).
    public func grantLease(ttl: Int) -> EventLoopFuture<(id: Int64, ttl: Int)> {
        call("/v3/lease/grant", ["TTL": .string("\(ttl)")]).flatMapThrowing { answer throws -> (id: Int64, ttl: Int) in
            guard let id = answer["ID"]?.int64, let granted = answer["TTL"]?.int64 else {
                throw EtcdError(.badAnswer, "etcd granted a lease without ID or TTL")
            }
            return (id, Int(granted))
        }
    }

    /// Renews a lease once; returns the ttl left, 0 when the lease is gone.
    public func keepAlive(_ lease: Int64) -> EventLoopFuture<Int> {
        call("/v3/lease/keepalive", ["ID": .string("\(lease)")]).map { answer in
            Int(answer["result"]?["TTL"]?.int64 ?? 0)
        }
    }

    /// Revokes a lease: every key attached to it goes.
    public func revokeLease(_ lease: Int64) -> EventLoopFuture<Void> {
        call("/v3/lease/revoke", ["ID": .string("\(lease)")]).map { _ in }
    }

    // MARK: - Keys

    /// Every key under `prefix`, and the store's revision they were read at.
    public func range(prefix: [UInt8]) -> EventLoopFuture<(revision: Int64, kvs: [KeyValue])> {
        call("/v3/kv/range", Self.rangeRequest(prefix: prefix)).flatMapThrowing { answer in
            (try Self.revision(of: answer), try Self.keyValues(answer["kvs"]))
        }
    }

    /// The outcome of ``create(key:value:lease:alsoRange:)``.
    public struct Created: Sendable {
        /// Whether the key was created (it did not exist).
        public var created: Bool
        /// The store's revision after the transaction: the key's create revision when created.
        public var revision: Int64
        /// The keys under the ranged prefix at that revision (the new key among them).
        public var kvs: [KeyValue]
    }

    /// Creates `key` with `lease` only if it does not exist, and reads every key under
    /// `alsoRange` in the same transaction.
    public func create(key: [UInt8], value: [UInt8], lease: Int64, alsoRange prefix: [UInt8]) -> EventLoopFuture<
        Created
    > {
        let body: JSONValue = [
            "compare": .array([
                ["target": "CREATE", "key": .string(Self.base64(key)), "create_revision": "0"]
            ]),
            "success": .array([
                [
                    "request_put": [
                        "key": .string(Self.base64(key)), "value": .string(Self.base64(value)),
                        "lease": .string("\(lease)"),
                    ]
                ],
                ["request_range": Self.rangeRequest(prefix: prefix)],
            ]),
            "failure": .array([["request_range": Self.rangeRequest(prefix: prefix)]]),
        ]
        return call("/v3/kv/txn", body).flatMapThrowing { answer in
            let succeeded = answer["succeeded"]?.bool ?? false
            guard case .array(let responses)? = answer["responses"], let range = responses.last?["response_range"]
            else {
                throw EtcdError(.badAnswer, "etcd answered a transaction without its range")
            }
            return Created(
                created: succeeded, revision: try Self.revision(of: answer), kvs: try Self.keyValues(range["kvs"]))
        }
    }

    /// Deletes `key` only if it is the one created at `createRevision` (not a later key of the
    /// same name); returns whether it was deleted.
    public func delete(key: [UInt8], createRevision: Int64) -> EventLoopFuture<Bool> {
        let body: JSONValue = [
            "compare": .array([
                ["target": "CREATE", "key": .string(Self.base64(key)), "create_revision": .string("\(createRevision)")]
            ]),
            "success": .array([["request_delete_range": ["key": .string(Self.base64(key))]]]),
            "failure": .array([]),
        ]
        return call("/v3/kv/txn", body).map { $0["succeeded"]?.bool ?? false }
    }

    /// Deletes `key`, whatever its revision: for a key whose path only its writer ever uses.
    public func delete(key: [UInt8]) -> EventLoopFuture<Void> {
        call("/v3/kv/deleterange", ["key": .string(Self.base64(key))]).map { _ in }
    }

    // MARK: - Watches

    /// How a watch ended.
    public enum WatchEnd: Sendable, Equatable {
        /// The revision asked for was compacted away: read the keys again (a range) and watch
        /// from there.
        case compacted(revision: Int64)
        /// etcd cancelled the watch (no leader: the member is cut off) or the stream broke.
        case cancelled(reason: String)
    }

    /// Watches every key under `prefix` from `revision` on. `onEvents` gets each batch with the
    /// revision it brings the store to; `onEnd` is called once when the watch is over.
    public func watch(
        prefix: [UInt8], from revision: Int64, onEvents: @escaping ([Event], Int64) -> Void,
        onEnd: @escaping (WatchEnd) -> Void
    ) -> EtcdStream {
        var request = Self.rangeRequest(prefix: prefix)
        if case .object(var members) = request {
            members.append(("start_revision", .string("\(revision)")))
            members.append(("progress_notify", true))
            request = .object(members)
        }
        var finished = false
        let finish = { (end: WatchEnd) in
            guard !finished else { return }
            finished = true
            onEnd(end)
        }
        // Without a leader, a member cancels the watch instead of going silent.
        let stream = transport.stream(
            "/v3/watch", ["create_request": request], headers: [("Grpc-Metadata-hasleader", "true")]
        ) { message in
            guard let result = message["result"] else {
                return finish(.cancelled(reason: message["error"]?["message"]?.string ?? "the watch failed"))
            }
            if let compacted = result["compact_revision"]?.int64, compacted > 0 {
                return finish(.compacted(revision: compacted))
            }
            if result["canceled"]?.bool == true {
                return finish(.cancelled(reason: result["cancel_reason"]?.string ?? "cancelled by etcd"))
            }
            let events = (result["events"]?.elements ?? []).compactMap(Self.event)
            if let revision = result["header"]?["revision"]?.int64, !events.isEmpty || result["created"] == nil {
                onEvents(events, revision)
            }
        }
        stream.ended.assumeIsolated().whenComplete { result in
            switch result {
            case .success: finish(.cancelled(reason: "the watch stream ended"))
            case .failure(let error): finish(.cancelled(reason: "\(error)"))
            }
        }
        return stream
    }

    // MARK: - Encoding

    private func call(_ path: String, _ body: JSONValue) -> EventLoopFuture<JSONValue> {
        transport.call(path, body, timeout: timeout)
    }

    static func base64(_ bytes: [UInt8]) -> String { Base64.encodeToString(bytes: bytes) }

    static func bytes(_ json: JSONValue?) -> [UInt8] {
        guard let text = json?.string else { return [] }
        return (try? text.base64decoded()) ?? []
    }

    /// The end of the range of every key that starts with `prefix`.
    static func rangeEnd(of prefix: [UInt8]) -> [UInt8] {
        var end = prefix
        while let last = end.last {
            if last < 0xff {
                end[end.count - 1] = last + 1
                return end
            }
            end.removeLast()
        }
        return [0]
    }

    static func rangeRequest(prefix: [UInt8]) -> JSONValue {
        ["key": .string(base64(prefix)), "range_end": .string(base64(rangeEnd(of: prefix)))]
    }

    static func revision(of answer: JSONValue) throws -> Int64 {
        guard let revision = answer["header"]?["revision"]?.int64 else {
            throw EtcdError(.badAnswer, "etcd answered without a header revision")
        }
        return revision
    }

    static func keyValues(_ json: JSONValue?) throws -> [KeyValue] {
        (json?.elements ?? []).compactMap(keyValue)
    }

    static func keyValue(_ json: JSONValue) -> KeyValue? {
        guard let create = json["create_revision"]?.int64 else { return nil }
        return KeyValue(
            key: bytes(json["key"]), value: bytes(json["value"]), createRevision: create,
            modRevision: json["mod_revision"]?.int64 ?? create, lease: json["lease"]?.int64 ?? 0)
    }

    static func event(_ json: JSONValue) -> Event? {
        guard let kv = json["kv"] else { return nil }
        if json["type"]?.string == "DELETE" {
            return .delete(key: bytes(kv["key"]), revision: kv["mod_revision"]?.int64 ?? 0)
        }
        return keyValue(kv).map(Event.put)
    }
}

extension JSONValue {
    /// A 64-bit number as the gateway writes it: a string (or, from other writers, a number).
    var int64: Int64? {
        switch self {
        case .string(let text): Int64(text)
        case .int(let value): value
        default: nil
        }
    }
}
