#ifndef CLOCKSUPPORT_H
#define CLOCKSUPPORT_H

#include <sys/types.h>
#include <sys/epoll.h>

/// Layout-compatible with glibc's `struct ucred`, which it hides without _GNU_SOURCE.
typedef struct {
    pid_t pid;
    uid_t uid;
    gid_t gid;
} lockd_ucred;

/// pidfd_open(2): glibc here has no wrapper and Swift cannot call the variadic syscall(2).
int lockd_pidfd_open(pid_t pid);

/// gettid(2), for the benchmark's per-thread CPU counters (same reason as above).
pid_t lockd_gettid(void);

/// Non-blocking check whether the process behind a pidfd has exited.
int lockd_pidfd_exited(int pidfd);

/// Options for lockd_spawn.
typedef struct {
    /// Put the child in a process group of its own (so a terminal's signals skip it).
    int new_process_group;
    /// Signal the child receives when the spawning process dies (PR_SET_PDEATHSIG); 0 for none.
    int parent_death_signal;
    /// With a new process group: a terminal fd whose foreground group the child takes, or -1.
    int foreground_tty;
} lockd_spawn_options;

/// The terminal among fds 0-2 whose foreground process group is the caller's, or -1.
int lockd_foreground_tty(void);

/// Makes the caller's process group the foreground group of `tty` again (SIGTTOU ignored).
void lockd_reclaim_tty(int tty);

/// fork + execvp with only async-signal-safe work in the child: the signal mask is cleared,
/// SIGINT/SIGTERM/SIGHUP/SIGQUIT/SIGPIPE go back to their default action, and the child dies with
/// its parent. Returns the child's pid, or -1 with errno set (also when exec failed: the child's
/// errno is passed back through a close-on-exec pipe).
pid_t lockd_spawn(const char *file, char *const argv[], lockd_spawn_options options);

/// Blocks SIGINT, SIGTERM, SIGHUP (and SIGQUIT when `quit` is set) and returns a signalfd
/// that reads them, or -1 with errno set.
int lockd_signalfd_for_termination(int quit);

/// Reads one siginfo from a signalfd. Returns the signal number, 0 when none is pending, -1 on
/// error; `sender_pid` and `code` receive ssi_pid and ssi_code.
int lockd_signalfd_read(int fd, pid_t *sender_pid, int *code);

/// Raises the soft limit on open files to the hard one (at most 2^20): every client is a
/// descriptor, and systemd advises it for programs that do not use select(2).
void lockd_raise_file_limit(void);

#endif
