import CSystemd
import Glibc
import Logging

/// A swift-log handler that writes structured records to the systemd journal (sd_journal_sendv).
///
/// Metadata become journal fields: `lock_name` is `LOCK_NAME`, so `journalctl -u lockd
/// LOCK_NAME=db` finds every record about the lock `db`.
struct JournalLogHandler: LogHandler {
    var metadata: Logger.Metadata = [:]
    private let label: String
    private let shared: SharedLogLevel

    init(label: String, level: SharedLogLevel) {
        self.label = label
        shared = level
    }

    var logLevel: Logger.Level {
        get { shared.level }
        set { shared.level = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        let fields = JournalFields.record(
            level: event.level, message: "\(event.message)", metadata: merged, identifier: "lockd",
            file: event.file, function: event.function, line: event.line)
        JournalFields.send(fields)
    }

    /// Whether stderr is the journal stream systemd connected (the check systemd documents for
    /// `$JOURNAL_STREAM`: it names the device and inode of that stream).
    static var isStderrTheJournal: Bool {
        guard let value = getenv("JOURNAL_STREAM").map({ String(cString: $0) }) else { return false }
        var info = stat()
        guard fstat(2, &info) == 0 else { return false }
        return value == "\(info.st_dev):\(info.st_ino)"
    }
}

/// The journal's native fields for one log record.
enum JournalFields {
    /// `FIELD=value` strings for sd_journal_sendv, metadata keys turned into field names.
    static func record(
        level: Logger.Level, message: String, metadata: Logger.Metadata, identifier: String,
        file: String, function: String, line: UInt
    ) -> [String] {
        var fields = [
            "MESSAGE=\(message)", "PRIORITY=\(priority(level))", "SYSLOG_IDENTIFIER=\(identifier)",
            "CODE_FILE=\(file)", "CODE_LINE=\(line)", "CODE_FUNC=\(function)",
        ]
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
            fields.append("\(fieldName(key))=\(value)")
        }
        return fields
    }

    /// Syslog priorities, as journalctl shows them (`-p`).
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// Journal field names are upper-case letters, digits and `_`, never start with `_` (those are
    /// trusted fields) or a digit, and have at most 64 characters.
    static func fieldName(_ key: String) -> String {
        var name = String(
            key.uppercased().unicodeScalars.map { scalar -> Character in
                ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar) ? Character(scalar) : "_"
            })
        while name.hasPrefix("_") { name.removeFirst() }
        if name.isEmpty || name.first!.isNumber { name = "F" + name }
        return String(name.prefix(64))
    }

    static func send(_ fields: [String]) {
        // One buffer for all fields, so every iovec points into memory pinned for the call.
        var bytes: [UInt8] = []
        var ranges: [Range<Int>] = []
        for field in fields {
            let start = bytes.count
            bytes.append(contentsOf: field.utf8)
            ranges.append(start..<bytes.count)
        }
        bytes.withUnsafeMutableBytes { buffer in
            let vectors = ranges.map { iovec(iov_base: buffer.baseAddress! + $0.lowerBound, iov_len: $0.count) }
            _ = vectors.withUnsafeBufferPointer { sd_journal_sendv($0.baseAddress, Int32($0.count)) }
        }
    }
}
