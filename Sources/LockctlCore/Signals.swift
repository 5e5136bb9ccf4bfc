import CLockSupport
import Glibc

/// SIGINT, SIGTERM and SIGHUP, blocked and read through a signalfd so they can be polled
/// together with the daemon's socket and the child's pidfd.
package struct TerminationSignals {
    package let fd: Int32

    package struct Received {
        var signal: Int32
        var senderPid: Int32
        var code: Int32

        /// Whether the kernel sent it to the whole foreground process group (the terminal's
        /// Ctrl-C, Ctrl-\\, a hang-up): then the command, in the same group, has it already.
        var isFromTerminal: Bool { code == 0x80 }  // SI_KERNEL
    }

    package init() {
        fd = lockd_signalfd(SIGINT, SIGTERM, SIGHUP)
    }

    /// The signals that arrived since the last call.
    package func drain() -> [Received] {
        var received: [Received] = []
        while true {
            var sender: Int32 = 0
            var code: Int32 = 0
            let signal = lockd_signalfd_read(fd, &sender, &code)
            if signal <= 0 { return received }
            received.append(Received(signal: signal, senderPid: sender, code: code))
        }
    }
}

/// Waits until one of `fds` is readable; returns their readiness in order.
package func waitReadable(_ fds: [Int32], timeout: Int32 = -1) -> [Bool] {
    var polls = fds.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
    while poll(&polls, nfds_t(polls.count), timeout) < 0, errno == EINTR {}
    return polls.map { $0.fd >= 0 && $0.revents != 0 }
}
