import Logging
import Synchronization

/// The one log level of the process, changed by a configuration reload.
///
/// swift-log gives every `Logger` copy its own level; lockd's handlers read this instead, so a
/// SIGHUP reaches loggers that were copied into services long before it.
final class SharedLogLevel: Sendable {
    private let raw: Atomic<Int>

    init(_ level: Logger.Level) {
        raw = Atomic(Self.index(of: level))
    }

    /// Read on every log call that might be filtered out (each request checks debug), so the
    /// levels are looked up in a table made once rather than in a fresh `allCases` array.
    var level: Logger.Level {
        get { Self.levels[raw.load(ordering: .relaxed)] }
        set { raw.store(Self.index(of: newValue), ordering: .relaxed) }
    }

    private static let levels = Logger.Level.allCases

    private static func index(of level: Logger.Level) -> Int {
        levels.firstIndex(of: level) ?? 2
    }
}

/// swift-log's stderr handler with the process-wide level.
struct StderrLogHandler: LogHandler {
    private var inner: StreamLogHandler
    private let shared: SharedLogLevel

    init(label: String, level: SharedLogLevel) {
        inner = StreamLogHandler.standardError(label: label)
        shared = level
    }

    var logLevel: Logger.Level {
        get { shared.level }
        set { shared.level = newValue }
    }

    var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) {
        inner.log(event: event)
    }
}
