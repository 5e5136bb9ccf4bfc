#!/usr/bin/env python3
"""Runs a command on a new pseudo-terminal, as a terminal user would.

pty-session.py READY TIMEOUT KEYS -- COMMAND...

The command runs as the session leader of a new pty, in its foreground process group. Once the
file READY exists, KEYS are typed (Python escapes: "\\x03" is Ctrl-C, "\\x1a" Ctrl-Z, "\\n"
Enter; "|" waits 0.3 s). Prints one JSON line: the output seen, and how the command ended
("exit" or "signal" with its number, or "timeout" after TIMEOUT seconds, when it is killed).
With PTY_UNTIL set (lines of text), the command is killed as soon as the output, without its
terminal escape sequences, shows every line of it; "until" is then true.
"""
import json, os, pty, re, select, signal, sys, time

escapes = re.compile(rb"\x1b(\[[0-9;?]*[A-Za-z]|\([A-Z0-9]|\][^\x07]*\x07)")
until = [line.encode() for line in os.environ.pop("PTY_UNTIL", "").split("\n") if line]


def shows_all(output):
    return bool(until) and all(text in escapes.sub(b"", output) for text in until)


ready, timeout, keys = sys.argv[1], float(sys.argv[2]), sys.argv[3].encode().decode("unicode_escape")
command = sys.argv[sys.argv.index("--") + 1:]
pid, fd = pty.fork()
if pid == 0:
    # A fresh terminal session: nothing ignored or blocked that the test runner had ignored or
    # blocked (both survive exec, and a shell cannot undo an inherited SIG_IGN).
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for number in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP, signal.SIGTSTP, signal.SIGPIPE):
        signal.signal(number, signal.SIG_DFL)
    os.execvp(command[0], command)
output = b""
deadline = time.monotonic() + timeout
typed = False
status = None
while time.monotonic() < deadline:
    if not typed and os.path.exists(ready):
        time.sleep(0.1)
        for part in keys.split("|"):
            if part:
                os.write(fd, part.encode())
            time.sleep(0.3)
        typed = True
    readable, _, _ = select.select([fd], [], [], 0.05)
    if readable:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            chunk = b""
        output += chunk
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    status = None
    if shows_all(output):
        break
if status is None:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    end = {"until": True} if shows_all(output) else {"timeout": True}
elif os.WIFSIGNALED(status):
    end = {"signal": os.WTERMSIG(status)}
else:
    end = {"exit": os.WEXITSTATUS(status)}
try:
    while True:
        readable, _, _ = select.select([fd], [], [], 0.05)
        if not readable:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        output += chunk
except OSError:
    pass
end["output"] = output.decode("utf-8", "replace")
print(json.dumps(end))
