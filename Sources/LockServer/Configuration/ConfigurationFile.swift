import Foundation
import Glibc
import Logging
import TOMLKit

/// A configuration file that could not be used, named by file, line and key.
struct ConfigurationError: Error, CustomStringConvertible {
    var file: String
    var line: Int?
    var key: String?
    var message: String

    var description: String {
        let place = line.map { "\(file):\($0)" } ?? file
        return key.map { "\(place): \($0): \(message)" } ?? "\(place): \(message)"
    }
}

/// Reads `lockd.toml` (TOMLKit parses it) into a ``LockdConfiguration``.
///
/// Unknown sections and keys are errors: a misspelt limit that silently keeps its default is
/// worse than a daemon that refuses to start and says where the typo is.
enum ConfigurationFile {
    /// Reads `path`. A missing file is an error only when `required` (it was named on the
    /// command line); the default file may be absent, and then the defaults apply.
    static func load(_ path: String, required: Bool) throws(ConfigurationError) -> LockdConfiguration {
        guard access(path, F_OK) == 0 || required else { return LockdConfiguration() }
        let bytes: [UInt8]
        do {
            bytes = try FileSystem.contents(of: path)
        } catch {
            throw ConfigurationError(file: path, message: "\(error)")
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw ConfigurationError(file: path, message: "not UTF-8 text")
        }
        return try parse(text, file: path)
    }

    /// Parses the text of a configuration file; `file` names it in errors.
    static func parse(_ text: String, file: String) throws(ConfigurationError) -> LockdConfiguration {
        let root: TOMLTable
        do {
            root = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigurationError(file: file, line: error.source.begin.line, message: error.description)
        } catch {
            throw ConfigurationError(file: file, message: "\(error)")
        }
        var reader = Reader(file: file, lines: text.split(separator: "\n", omittingEmptySubsequences: false))
        var configuration = LockdConfiguration()
        for section in root.keys {
            let sections = schema.keys.sorted().map { "[\($0)]" }.joined(separator: ", ")
            guard let table = root[section]?.table else {
                throw reader.error(section: nil, key: section, "unknown key; settings belong in \(sections)")
            }
            guard let keys = schema[section] else {
                throw reader.error(section: nil, key: section, "unknown section; known are \(sections)")
            }
            for key in table.keys {
                guard let apply = keys[key] else {
                    throw reader.error(section: section, key: key, "unknown key (known: \(keys.keys.sorted()))")
                }
                reader.section = section
                reader.key = key
                try apply(&reader, table[key]!, &configuration)
            }
        }
        do {
            configuration.cluster = try configuration.clusterTable.settings()
        } catch {
            throw reader.error(section: "cluster", key: error.key, error.message)
        }
        return configuration
    }

    /// The keys by section, from ``ConfigurationKey/all``.
    private static let schema: [String: [String: ConfigurationKey.Parse]] = Dictionary(
        grouping: ConfigurationKey.all, by: \.section
    ).mapValues { keys in Dictionary(uniqueKeysWithValues: keys.map { ($0.name, $0.parse) }) }

    /// Typed access to values, with errors that point at the line of the key being read.
    struct Reader {
        let file: String
        let lines: [Substring]
        var section: String?
        var key: String?
        /// Which `[[section]]` table, for arrays of tables.
        var occurrence = 0

        init(file: String, lines: [Substring]) {
            self.file = file
            self.lines = lines
        }

        func string(_ value: any TOMLValueConvertible) throws(ConfigurationError) -> String {
            guard let string = value.string else { throw error("must be a string") }
            return string
        }

        func integer(
            _ value: any TOMLValueConvertible, in range: ClosedRange<Int>, hint: String? = nil
        ) throws(ConfigurationError) -> Int {
            guard let number = value.int, range.contains(number) else {
                throw error("must be \(hint ?? "an integer") in \(range.lowerBound)...\(range.upperBound)")
            }
            return number
        }

        /// A duration in seconds; `inf` means unbounded and reads as `nil`.
        func seconds(_ value: any TOMLValueConvertible, allowZero: Bool) throws(ConfigurationError) -> Double? {
            let number = value.double ?? value.int.map(Double.init)
            guard let number, !number.isNaN, allowZero ? number >= 0 : number > 0 else {
                throw error("must be a number of seconds \(allowZero ? ">= 0" : "> 0") (or inf)")
            }
            return number.isInfinite ? nil : number
        }

        /// Users (`"alice"`, a uid), groups (`"@ops"`), or everyone (`"*"`), as an array.
        func principals(_ value: any TOMLValueConvertible) throws(ConfigurationError) -> AccessPolicy.Principals {
            guard let array = value.array else {
                throw error("must be an array of users, \"@groups\", uids or \"*\"")
            }
            var principals = AccessPolicy.Principals()
            for index in 0..<array.count {
                let item = array[index]
                if let uid = item.int, let id = UInt32(exactly: uid) {
                    principals.uids.insert(id)
                } else if let name = item.string {
                    if name == "*" {
                        principals.everyone = true
                    } else if name.hasPrefix("@") {
                        guard let group = getgrnam(String(name.dropFirst())) else {
                            throw error("no group \"\(name.dropFirst())\" on this system")
                        }
                        principals.gids.insert(group.pointee.gr_gid)
                    } else {
                        guard let user = getpwnam(name) else { throw error("no user \"\(name)\" on this system") }
                        principals.uids.insert(user.pointee.pw_uid)
                    }
                } else {
                    throw error("must be an array of users, \"@groups\", uids or \"*\"")
                }
            }
            return principals
        }

        func error(_ message: String) -> ConfigurationError {
            let name = section == "access.rule" ? "access.rule[\(occurrence + 1)].\(key ?? "")" : nil
            var error = error(section: section, key: key ?? "", message)
            if let name { error.key = name }
            return error
        }

        func error(section: String?, key: String, _ message: String) -> ConfigurationError {
            let name = section.map { "\($0).\(key)" } ?? key
            return ConfigurationError(file: file, line: line(of: key, in: section), key: name, message: message)
        }

        /// The line that sets `key` in `section` (TOMLKit keeps no positions for values).
        private func line(of key: String, in section: String?) -> Int? {
            var current: String?
            var seen = -1
            for (index, raw) in lines.enumerated() {
                let text = raw.trimmingCharacters(in: .whitespaces)
                if text.hasPrefix("[") {
                    let header = text.drop { $0 == "[" }.prefix { $0 != "]" }.trimmingCharacters(in: .whitespaces)
                    if section == nil, header == key { return index + 1 }
                    current = header
                    if header == section { seen += 1 }
                    continue
                }
                let table = section == "access.rule" ? occurrence : seen
                guard current == section, seen == table, text.hasPrefix(key) else { continue }
                let rest = text.dropFirst(key.count).drop { $0 == " " || $0 == "\t" }
                if rest.hasPrefix("=") { return index + 1 }
            }
            return nil
        }
    }
}
