import Glibc
import LockctlCore

// The lean lockctl: the command lines scripts repeat, read by QuickParse and run here, in a
// binary without argument-parser (and so without Foundation's conformance records, which every
// first use of a generic type scans: docs/performance.md). Everything else (help, errors,
// completions, the other commands, lflock) is `lockctl-full`, the argument-parser command line,
// which this process becomes.

/// Where lockctl-full is: beside this binary (a build directory), else in `../libexec/lockd`
/// (an installed lockctl).
func fullLockctl() -> String? {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard count > 0 else { return nil }
    let path = String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    let directory = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
    return [directory + "/lockctl-full", directory + "/../libexec/lockd/lockctl-full"].first {
        access($0, X_OK) == 0
    }
}

let arguments = CommandLine.arguments
let invokedAs = arguments.first.map { $0.split(separator: "/").last.map(String.init) ?? $0 }
if invokedAs != "lflock", let invocation = QuickParse.invocation(Array(arguments.dropFirst())) {
    do {
        try invocation.run()
        exit(0)
    } catch let code as ExitCode {
        exit(code.rawValue)
    } catch {
        printError("\(error)")
        exit(Exit.software)
    }
}
guard let full = fullLockctl() else {
    printError("cannot find lockctl-full beside lockctl or in ../libexec/lockd (is lockctl installed whole?)")
    exit(Exit.software)
}
let argv = arguments.map { strdup($0) } + [nil]
execv(full, argv)
printError("cannot run \(full): \(String(cString: strerror(errno)))")
exit(Exit.software)
