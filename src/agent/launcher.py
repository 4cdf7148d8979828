#!/usr/bin/env python3
"""Starts labsweep task processes on behalf of the agent.

Node's spawn blocks its event loop until the child has exec'd (milliseconds per task on a busy
machine); this small process forks and execs instead, so the agent never waits. It dies with the
agent (parent-death signal), and every task it starts dies with it in turn, so no task outlives
its agent, even after a SIGKILL.

Protocol, one JSON object per line. In:  {"id", "cmd", "cwd", "env", "log"}.
Out: {"ev": "started", "id", "pid"} | {"ev": "exit", "id", "code", "signal"} |
     {"ev": "error", "id", "message"}.
"""
import ctypes
import json
import os
import signal
import sys
import threading

PR_SET_PDEATHSIG = 1
libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent(parent_pid):
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)


agent_pid = int(sys.argv[1])
die_with_parent(agent_pid)
launcher_pid = os.getpid()

out_lock = threading.Lock()
table_lock = threading.Lock()
task_of_pid = {}
have_children = threading.Event()


def send(message):
    line = json.dumps(message) + "\n"
    with out_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def start(request):
    log_fd = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        with table_lock:
            pid = os.fork()
            if pid == 0:
                exec_task(request, log_fd)
            task_of_pid[pid] = request["id"]
    finally:
        os.close(log_fd)
    send({"ev": "started", "id": request["id"], "pid": pid})
    have_children.set()


def exec_task(request, log_fd):
    """In the child: own session and process group, dies with the launcher, then exec."""
    try:
        os.setsid()
        die_with_parent(launcher_pid)
        os.chdir(request["cwd"])
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        # Python ignores SIGPIPE and SIGXFSZ; a task must get the defaults.
        for name in ("SIGPIPE", "SIGXFSZ"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), signal.SIG_DFL)
        os.execve("/bin/sh", ["sh", "-c", request["cmd"]], request["env"])
    except BaseException as error:  # noqa: BLE001 - nothing may return into the launcher's loop
        try:
            os.write(2, ("labsweep: could not start the command: %s\n" % error).encode())
        finally:
            os._exit(127)


def reap():
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            have_children.wait()
            have_children.clear()
            continue
        with table_lock:
            task = task_of_pid.pop(pid, None)
        if task is None:
            continue
        if os.WIFSIGNALED(status):
            send({"ev": "exit", "id": task, "code": None, "signal": signal.Signals(os.WTERMSIG(status)).name})
        else:
            send({"ev": "exit", "id": task, "code": os.WEXITSTATUS(status), "signal": None})


threading.Thread(target=reap, daemon=True).start()
for line in sys.stdin:
    if not line.strip():
        continue
    request = json.loads(line)
    try:
        start(request)
    except OSError as error:
        send({"ev": "error", "id": request.get("id"), "message": str(error)})
# stdin closed: the agent is gone or done. Tasks still running are the agent's to stop.
os._exit(0)
