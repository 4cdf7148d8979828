#!/usr/bin/env python3
"""Starts labsweep task processes on behalf of the agent.

Node's spawn blocks its event loop until the child has exec'd (milliseconds per task on a busy
machine); this small process starts tasks instead (subprocess's vfork-based spawn: about 1 ms,
a third of a Python fork, whose child pays a page fault for every object it touches), so the
agent never waits. It also keeps tasks from outliving their agent: when the agent dies, even by
SIGKILL, the launcher sees its stdin close and SIGKILLs every task's whole process group
(grandchildren included). Should the launcher itself die, the agent kills the groups.

Protocol, one JSON object per line. In:  {"id", "cmd", "cwd", "env", "log"} to start a task;
{"forget": pid} once the agent has finished with a task's process group.
Out: {"ev": "started", "id", "pid"} | {"ev": "exit", "id", "code", "signal"} |
     {"ev": "error", "id", "message"}.
"""
import json
import os
import signal
import subprocess
import sys
import threading

# Ctrl-C in the terminal reaches the agent and this process alike; the agent decides what a
# Ctrl-C means for running tasks, so the launcher must outlive it. A handler, not SIG_IGN: an
# ignored signal stays ignored across exec, and tasks must get the default.
signal.signal(signal.SIGINT, lambda _signal, _frame: None)
devnull = os.open(os.devnull, os.O_RDONLY)

out_lock = threading.Lock()
table_lock = threading.Lock()
task_of_pid = {}
# The Popen of each running task, kept until the reaper has reaped it: a Popen collected while
# its child runs is polled by subprocess's own cleanup, which would reap our child (or, after pid
# reuse, another one) behind the reaper's back.
popen_of_pid = {}
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
            # Own session and process group; SIGPIPE and SIGXFSZ (which Python ignores) back to
            # their defaults. A cwd or exec failure raises here: the agent hears "error".
            popen = subprocess.Popen(
                ["/bin/sh", "-c", request["cmd"]],
                cwd=request["cwd"],
                env=request["env"],
                stdin=devnull,
                stdout=log_fd,
                stderr=log_fd,
                start_new_session=True,
                restore_signals=True,
            )
            task_of_pid[popen.pid] = request["id"]
            popen_of_pid[popen.pid] = popen
            send({"ev": "started", "id": request["id"], "pid": popen.pid})
    finally:
        os.close(log_fd)
    have_children.set()


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
            popen = popen_of_pid.pop(pid, None)
            if popen is not None:
                popen.returncode = status  # reaped: subprocess must not wait for it again
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
