import Foundation
import Testing

@testable import LockServer

@Suite("the one table of configuration keys")
struct ConfigurationKeyTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    static func text(_ path: String) throws -> String {
        try String(contentsOf: repository.appendingPathComponent(path), encoding: .utf8)
    }

    @Test("config/lockd.toml documents every key in its section, and no other")
    func shippedFile() throws {
        var section = ""
        var documented: Set<String> = []
        for line in try Self.text("config/lockd.toml").split(separator: "\n") {
            let text = line.trimmingCharacters(in: .whitespaces)
            if text.hasPrefix("[") && !text.hasPrefix("[[") {
                section = String(text.dropFirst().prefix { $0 != "]" })
                continue
            }
            let setting = text.hasPrefix("# ") ? String(text.dropFirst(2)) : text
            guard let equals = setting.firstIndex(of: "="), section != "access" || !text.hasPrefix("# ") else {
                continue
            }
            let name = setting[..<equals].trimmingCharacters(in: .whitespaces)
            if name.allSatisfy({ $0.isLowercase || $0 == "_" }) { documented.insert("\(section).\(name)") }
        }
        documented.insert("access.rule")  // [[access.rule]] tables, shown commented out
        #expect(documented == Set(ConfigurationKey.all.map(\.path)))
    }

    @Test("docs/configuration.md says for every key what a reload does, as the table does")
    func reloadDocumented() throws {
        let rows = try Self.text("docs/configuration.md").split(separator: "\n").filter { $0.hasPrefix("| `") }
        for key in ConfigurationKey.all {
            let row = try #require(rows.first { $0.hasPrefix("| `\(key.path)` |") }, "no row for \(key.path)")
            #expect(row.contains("at once") == key.appliesOnReload, "\(row)")
        }
    }

    @Test("a reload takes exactly the keys that apply on reload")
    func reload() throws {
        var current = LockdConfiguration()
        var new = LockdConfiguration()
        new.socketPath = "/elsewhere.sock"
        new.limits.maxClients = 3
        new.logLevel = .debug
        new.stateDirectory = "/var/tmp/other"
        let changes = ConfigurationChanges(from: current, to: new)
        #expect(changes.applied.sorted() == ["limits.max_clients: 4096 -> 3", "log.level: info -> debug"])
        #expect(changes.needingRestart.sorted() == ["socket.path", "state.directory"])
        current.reload(from: new)
        #expect(current.limits.maxClients == 3 && current.logLevel == .debug)
        #expect(current.socketPath == nil && current.stateDirectory == nil)
    }
}
