#define _GNU_SOURCE
#include "CLockSupport.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

pid_t lockd_gettid(void) { return (pid_t)syscall(SYS_gettid); }

int lockd_pidfd_open(pid_t pid) {
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

int lockd_pidfd_exited(int pidfd) {
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    int r = poll(&p, 1, 0);
    return r > 0 && (p.revents & (POLLIN | POLLHUP)) ? 1 : 0;
}

int lockd_signalfd(int signal, int also, int more) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, signal);
    if (also) sigaddset(&set, also);
    if (more) sigaddset(&set, more);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) {
        return -1;
    }
    return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

int lockd_signalfd_read(int fd, pid_t *sender_pid, int *code) {
    struct signalfd_siginfo info;
    ssize_t n = read(fd, &info, sizeof(info));
    if (n < 0) {
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
    }
    if (n != sizeof(info)) {
        return 0;
    }
    *sender_pid = (pid_t)info.ssi_pid;
    *code = info.ssi_code;
    return (int)info.ssi_signo;
}

struct spawn_request {
    const char *file;
    char *const *argv;
    lockd_spawn_options options;
    pid_t parent;
    /// Where the child writes errno when exec fails (close-on-exec: a successful exec closes it).
    int error_fd;
};

/// The child's side: only async-signal-safe calls. With CLONE_VM it runs on a stack of its own in
/// the parent's memory until exec, and writes nothing there.
static int spawn_child(void *raw) {
    struct spawn_request *request = raw;
    // A handler of lockctl's (or of Swift's runtime) must not run here; the parent blocked every
    // signal before clone, and the mask is cleared only at the end.
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction current;
        if (sigaction(sig, NULL, &current) == 0 && current.sa_handler != SIG_IGN && current.sa_handler != SIG_DFL) {
            struct sigaction reset = {.sa_handler = SIG_DFL};
            sigaction(sig, &reset, NULL);
        }
    }
    if (request->options.parent_death_signal != 0) {
        prctl(PR_SET_PDEATHSIG, request->options.parent_death_signal);
        // The parent may have died before prctl took effect.
        if (getppid() != request->parent) {
            _exit(127);
        }
    }
    if (request->options.inherit_fd >= 0) {
        fcntl(request->options.inherit_fd, F_SETFD, 0);
    }
    int termination[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    for (size_t i = 0; i < sizeof(termination) / sizeof(termination[0]); i++) {
        struct sigaction action = {.sa_handler = request->options.ignore_termination ? SIG_IGN : SIG_DFL};
        sigaction(termination[i], &action, NULL);
    }
    struct sigaction pipe_default = {.sa_handler = SIG_DFL};
    sigaction(SIGPIPE, &pipe_default, NULL);
    sigset_t empty;
    sigemptyset(&empty);
    sigprocmask(SIG_SETMASK, &empty, NULL);
    execvp(request->file, request->argv);
    int err = errno;
    ssize_t ignored = write(request->error_fd, &err, sizeof(err));
    (void)ignored;
    _exit(127);
}

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
// ThreadSanitizer cannot follow a child that shares the parent's memory: fork in such builds.
#define LOCKD_SPAWN_WITH_FORK 1
#endif
#endif

pid_t lockd_spawn(const char *file, char *const argv[], lockd_spawn_options options) {
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        return -1;
    }
    struct spawn_request request = {
        .file = file, .argv = argv, .options = options, .parent = getpid(), .error_fd = pipefd[1]};
    sigset_t all, saved;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &saved);
#ifdef LOCKD_SPAWN_WITH_FORK
    pid_t child = fork();
    if (child == 0) {
        spawn_child(&request);
    }
#else
    // clone(CLONE_VM | CLONE_VFORK) on a stack of its own, as glibc's posix_spawn does: no copy
    // of lockctl's page tables and no copy-on-write faults afterwards, which fork paid on every
    // `run` (docs/performance.md). posix_spawn itself cannot set PR_SET_PDEATHSIG or start the
    // command with signals ignored while lockctl keeps them blocked.
    const size_t stack_size = 256 * 1024;
    void *stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    pid_t child = -1;
    if (stack != MAP_FAILED) {
        child = clone(spawn_child, (char *)stack + stack_size, CLONE_VM | CLONE_VFORK | SIGCHLD, &request);
    }
#endif
    int spawn_errno = errno;
    sigprocmask(SIG_SETMASK, &saved, NULL);
#ifndef LOCKD_SPAWN_WITH_FORK
    if (stack != MAP_FAILED) {
        munmap(stack, stack_size);
    }
#endif
    close(pipefd[1]);
    if (child < 0) {
        close(pipefd[0]);
        errno = spawn_errno;
        return -1;
    }
    int child_errno = 0;
    ssize_t n;
    do {
        n = read(pipefd[0], &child_errno, sizeof(child_errno));
    } while (n < 0 && errno == EINTR);
    close(pipefd[0]);
    if (n == sizeof(child_errno)) {
        int status;
        while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
        }
        errno = child_errno;
        return -1;
    }
    return child;
}

void lockd_die_by_signal(int sig) {
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
    signal(sig, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    kill(getpid(), sig);
}

char lockd_process_state(pid_t pid) {
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char buffer[512];
    ssize_t n = read(fd, buffer, sizeof(buffer) - 1);
    close(fd);
    if (n <= 0) return 0;
    buffer[n] = 0;
    char *close_paren = strrchr(buffer, ')');
    if (close_paren == NULL || close_paren[1] != ' ') return 0;
    return close_paren[2];
}

void lockd_raise_file_limit(void) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= limit.rlim_max) return;
    limit.rlim_cur = limit.rlim_max < (1 << 20) ? limit.rlim_max : (1 << 20);
    setrlimit(RLIMIT_NOFILE, &limit);
}

void lockd_become_subreaper(void) { prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }

int lockd_has_children(void) {
    siginfo_t info;
    info.si_pid = 0;
    // WNOWAIT leaves a zombie for a later waitpid; ECHILD means there are none at all.
    return waitid(P_ALL, 0, &info, WEXITED | WSTOPPED | WCONTINUED | WNOHANG | WNOWAIT) == 0;
}

int lockd_range_set(int fd, int per_description, int kind, off_t start) {
    static const short types[] = {F_UNLCK, F_RDLCK, F_WRLCK};
    struct flock lock = {.l_type = types[kind], .l_whence = SEEK_SET, .l_start = start, .l_len = 1};
    return fcntl(fd, per_description ? F_OFD_SETLK : F_SETLK, &lock);
}

int lockd_range_test(int fd, off_t start, off_t length, lockd_range *found) {
    struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = start, .l_len = length};
    if (fcntl(fd, F_OFD_GETLK, &lock) != 0) {
        return -1;
    }
    if (lock.l_type == F_UNLCK) {
        return 0;
    }
    found->start = lock.l_start;
    found->length = lock.l_len;
    found->pid = lock.l_pid;
    return 1;
}

int lockd_close_watch(const char *path) {
    int fd = inotify_init1(IN_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    if (inotify_add_watch(fd, path, IN_CLOSE_WRITE | IN_CLOSE_NOWRITE) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

void lockd_close_descriptors(const int *keep, int count) {
    int from = 3;
    for (;;) {
        // The lowest kept descriptor at or above `from`.
        int next = -1;
        for (int i = 0; i < count; i++) {
            if (keep[i] >= from && (next < 0 || keep[i] < next)) {
                next = keep[i];
            }
        }
        if (next < 0) {
            break;
        }
        if (next > from) {
            syscall(SYS_close_range, (unsigned int)from, (unsigned int)next - 1, 0);
        }
        from = next + 1;
    }
    syscall(SYS_close_range, (unsigned int)from, ~0U, 0);
}

int lockd_pidfd_signal(int pidfd, int signal) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, signal, NULL, 0);
}

void lockd_detach(void) {
    prctl(PR_SET_PDEATHSIG, 0);
    setsid();
    int ignored[] = {SIGINT, SIGHUP, SIGQUIT, SIGTSTP, SIGTTIN, SIGTTOU, SIGPIPE};
    for (size_t i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++) {
        signal(ignored[i], SIG_IGN);
    }
    signal(SIGTERM, SIG_DFL);
    sigset_t empty;
    sigemptyset(&empty);
    sigprocmask(SIG_SETMASK, &empty, NULL);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        if (null > 2) {
            close(null);
        }
    }
}
