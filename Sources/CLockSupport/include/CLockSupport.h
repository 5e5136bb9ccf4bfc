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
    /// Start the child with SIGINT, SIGTERM, SIGHUP and SIGQUIT ignored (a shielded command: the
    /// terminal's Ctrl-C reaches the whole foreground group, and only lockctl acts on it).
    int ignore_termination;
    /// A descriptor the child inherits (lockctl's connection to lockd, so that the hold lasts
    /// while any process holding it lives), or -1.
    int inherit_fd;
    /// Signal the child receives when the spawning process dies (PR_SET_PDEATHSIG); 0 for none.
    int parent_death_signal;
} lockd_spawn_options;

/// fork + execvp with only async-signal-safe work in the child, which stays in the caller's
/// process group (one job for the shell: Ctrl-C and Ctrl-Z reach both, and the command keeps the
/// terminal): the signal mask is cleared, SIGINT/SIGTERM/SIGHUP/SIGQUIT go back to their default
/// action (or are ignored, see the options), SIGPIPE to its default. Returns the child's pid, or
/// -1 with errno set (also when exec failed: the child's errno comes back through a pipe).
pid_t lockd_spawn(const char *file, char *const argv[], lockd_spawn_options options);

/// Blocks `signal` (and `also` and `more`, when not 0) and returns a signalfd that reads them,
/// or -1 with errno set.
int lockd_signalfd(int signal, int also, int more);

/// Reads one siginfo from a signalfd. Returns the signal number, 0 when none is pending, -1 on
/// error; `sender_pid` and `code` receive ssi_pid and ssi_code.
int lockd_signalfd_read(int fd, pid_t *sender_pid, int *code);

/// Ends the caller by `signal` as if it had not been caught: the default action is restored, the
/// signal unblocked and sent (no core file is written). Returns only if the signal does not end
/// the process (then the caller should exit 128+signal).
void lockd_die_by_signal(int signal);

/// Makes the caller a child subreaper (PR_SET_CHILD_SUBREAPER): orphaned descendants of its
/// children become its children, so it can tell whether a command left processes behind.
void lockd_become_subreaper(void);

/// Whether the caller has children that have not been reaped (running or not yet waited for).
int lockd_has_children(void);

/// The state letter of /proc/PID/stat (R, S, T, Z, ...), or 0 when it cannot be read.
char lockd_process_state(pid_t pid);

/// Raises the soft limit on open files to the hard one (at most 2^20): every client is a
/// descriptor, and systemd advises it for programs that do not use select(2).
void lockd_raise_file_limit(void);

/// A byte-range lock found by lockd_range_test.
typedef struct {
    off_t start;
    /// 0 means "to the end of the file, however large".
    off_t length;
    /// The owning process for a process-associated (POSIX) lock; -1 for an open file
    /// description's lock.
    pid_t pid;
} lockd_range;

/// Lock kinds for lockd_range_set: remove, shared (read), exclusive (write).
enum { LOCKD_RANGE_UNLOCK = 0, LOCKD_RANGE_READ = 1, LOCKD_RANGE_WRITE = 2 };

/// Sets or removes a lock on the one byte at `start` without waiting: an open file description's
/// lock (F_OFD_SETLK, shared by every descriptor of that description) when `per_description`, else
/// a process-associated one (F_SETLK). Returns 0, or -1 with errno set (EAGAIN when held).
int lockd_range_set(int fd, int per_description, int kind, off_t start);

/// Looks for a lock in [start, start + length) (length 0: to the end) that another open file
/// description or process holds (F_OFD_GETLK with an exclusive request, which conflicts with
/// every lock, and works on a descriptor of any access mode). Returns 1 and fills `found`, 0 when
/// there is none, -1 with errno set.
int lockd_range_test(int fd, off_t start, off_t length, lockd_range *found);

/// An inotify descriptor (close-on-exec) that becomes readable whenever an open file description
/// of `path` is released (IN_CLOSE_WRITE, IN_CLOSE_NOWRITE), or -1 with errno set.
int lockd_close_watch(const char *path);

/// Closes every descriptor from 3 up, except the `count` ones in `keep` (-1 entries keep nothing).
void lockd_close_descriptors(const int *keep, int count);

/// pidfd_send_signal(2).
int lockd_pidfd_signal(int pidfd, int signal);

/// Leaves the caller's session and terminal for good: no parent-death signal, a session of its
/// own, Ctrl-C, hang-ups and job-control signals ignored (SIGTERM keeps its default action), no
/// blocked signals, and /dev/null on stdin, stdout and stderr.
void lockd_detach(void);

#endif
