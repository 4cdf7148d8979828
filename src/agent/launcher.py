#!/usr/bin/env python3
"""Starts labsweep task processes on behalf of the agent.

Node's spawn blocks its event loop until the child has exec'd (milliseconds per task on a busy
machine); this small process forks and execs instead, so the agent never waits. It also keeps
tasks from outliving their agent: when the agent dies, even by SIGKILL, the launcher sees its
stdin close and SIGKILLs every task's whole process group (grandchildren included). Each task
also carries a parent-death signal, so it dies if the launcher itself is killed.

Protocol, one JSON object per line. In:  {"id", "cmd", "cwd", "env", "log"} to start a task;
{"forget": pid} once the agent has finished with a task's process group.
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


launcher_pid = os.getpid()
# Ctrl-C in the terminal reaches the agent and this process alike; the agent decides what a
# Ctrl-C means for running tasks, so the launcher must outlive it.
signal.signal(signal.SIGINT, signal.SIG_IGN)

out_lock = threading.Lock()
table_lock = threading.Lock()
task_of_pid = {}
# Groups whose leader exited but which the agent has not yet finished with (it may still be
# waiting out a grace period): killed too if the agent dies now.
lingering = set()
have_children = threading.Event()


def send(message):
    line = json.dumps(message) + "\n"
    with out_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def start(request):
    log_fd = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        # "started" is sent under the lock the reaper takes before it reports an exit, so the
        # agent always hears of a task's start before its end.
        with table_lock:
            pid = os.fork()
            if pid == 0:
                exec_task(request, log_fd)
            task_of_pid[pid] = request["id"]
            send({"ev": "started", "id": request["id"], "pid": pid})
    finally:
        os.close(log_fd)
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
        # Python ignores SIGPIPE and SIGXFSZ, and this launcher SIGINT; a task gets the defaults.
        for name in ("SIGPIPE", "SIGXFSZ", "SIGINT"):
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
            lingering.add(pid)
            if os.WIFSIGNALED(status):
                send({"ev": "exit", "id": task, "code": None, "signal": signal.Signals(os.WTERMSIG(status)).name})
            else:
                send({"ev": "exit", "id": task, "code": os.WEXITSTATUS(status), "signal": None})


threading.Thread(target=reap, daemon=True).start()
for line in sys.stdin:
    if not line.strip():
        continue
    request = json.loads(line)
    if "forget" in request:
        with table_lock:
            lingering.discard(request["forget"])
        continue
    try:
        start(request)
    except OSError as error:
        send({"ev": "error", "id": request.get("id"), "message": str(error)})
# stdin closed: the agent exited or was killed. No task may outlive it.
with table_lock:
    orphans = list(task_of_pid) + list(lingering)
for pid in orphans:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
os._exit(0)
