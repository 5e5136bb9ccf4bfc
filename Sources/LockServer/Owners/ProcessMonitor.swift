import Glibc

/// One watched process: it tells when the process is gone, and keeps telling after that.
protocol ProcessWatch: AnyObject {
    var pid: Int32 { get }
    /// The process's start time (proc(5) field 22): with the pid it names one process for good.
    var startTime: UInt64? { get }
    /// Whether the process has exited, even before the exit was delivered.
    var hasExited: Bool { get }
    func stop()
}

/// What lockd needs to know about processes. The daemon asks the kernel (``LinuxProcesses``:
/// pidfds and /proc); the whole-service fuzzer simulates a process table.
protocol ProcessMonitor: AnyObject {
    /// Watches `pid`; `onExit` runs once, on any thread, when it exits. `nil`: no such process.
    func watch(_ pid: Int32, onExit: @escaping @Sendable () -> Void) -> (any ProcessWatch)?
    /// Whether `ancestor` is `pid` or one of its ancestors.
    func isSelfOrAncestor(_ ancestor: Int32, of pid: Int32) -> Bool
    /// The real uid of `pid`.
    func uid(of pid: Int32) -> UInt32?
    /// The command line of `pid`, for `status`.
    func commandLine(of pid: Int32) -> String?
    /// The primary and supplementary groups of `pid`, for access rules.
    func groups(of pid: Int32, primary: UInt32) -> Set<UInt32>
}

/// The kernel's view: pidfds for exits, /proc for the rest.
final class LinuxProcesses: ProcessMonitor {
    func watch(_ pid: Int32, onExit: @escaping @Sendable () -> Void) -> (any ProcessWatch)? {
        try? ProcessWatcher(pid: pid, onExit: onExit)
    }

    func isSelfOrAncestor(_ ancestor: Int32, of pid: Int32) -> Bool { ProcFS.isSelfOrAncestor(ancestor, of: pid) }
    func uid(of pid: Int32) -> UInt32? { ProcFS.uid(of: pid) }
    func commandLine(of pid: Int32) -> String? { ProcFS.commandLine(of: pid) }

    func groups(of pid: Int32, primary: UInt32) -> Set<UInt32> {
        Set(ProcFS.supplementaryGroups(of: pid) + [primary])
    }
}
