#!/usr/bin/env python3
"""Starts labsweep task processes on behalf of the agent.

Node's spawn blocks its event loop until the child has exec'd (milliseconds per task on a busy
machine); this small process starts tasks instead (subprocess's vfork-based spawn: about 1 ms,
a third of a Python fork, whose child pays a page fault for every object it touches), so the
agent never waits. It also keeps tasks from outliving their agent: when the agent dies, even by
SIGKILL, the launcher sees its stdin close and SIGKILLs every task's whole process group
(grandchildren included). Should the launcher itself die, the agent kills the groups.

Chaining: a start request with "after": ID is for a slot's next task, leased ahead by the agent.
Its process is spawned at once but held at a gate (a shell waiting to read a line on its stdin)
until task ID has exited; the thread that reaps ID then opens the gate, and the shell execs the
task's own `/bin/sh -c CMD` in the same process. So the next task starts without waiting for the
exit to travel to the agent, a start request to travel back, or a spawn, which on a busy machine
takes milliseconds. The agent can still start it early ("release") or take it back while it
waits ("drop"). Chains may be several deep: ID may itself be waiting.

Protocol, one JSON object per line. In: {"base", "env"} names an environment by a number, so
that a start request can carry only its task's own variables; {"id", "cmd", "cwd", "env",
"base"?, "log", "dirs"?, "clear"?, "files"?, "after"?} to start a task, in "env" laid over
environment "base" where given: "dirs" are made first (mode 0700, missing parents too), then the
files in "clear" removed (where they exist), then "files" ([path, text] pairs) written, then the
log opened; the agent leaves them to the launcher because on a journal-less ext4 a mkdir costs
milliseconds, which here run beside the agent's event loop, not on it; {"release": id} /
{"drop": id} for a chained task still waiting; {"forget": pid} once the agent has finished with
a task's process group (SIGKILL what is left of it, then forget it).
Out: {"ev": "started", "id", "pid"} | {"ev": "exit", "id", "code", "signal"} |
     {"ev": "error", "id", "message"} | {"ev": "dropped", "id"}.
"started" comes when the task really starts (a gate opens), never before.
"""
import json
import os
import signal
import subprocess
import sys
import threading

# Ctrl-C in the terminal reaches the agent and this process alike, and so does a scheduler's
# SIGTERM to every process of a job (SLURM's scancel and time limit, systemd's control-group
# kill). The agent decides what they mean for running tasks (a stop with its grace period), so
# the launcher must outlive them: dead, it would leave the agent only SIGKILL for the tasks. A
# handler, not SIG_IGN: an ignored signal stays ignored across exec, and tasks must get the default.
signal.signal(signal.SIGINT, lambda _signal, _frame: None)
signal.signal(signal.SIGTERM, lambda _signal, _frame: None)
devnull = os.open(os.devnull, os.O_RDONLY)

# The gate, put before the task's own command in the one `sh -c` string: wait for the go line,
# give the task /dev/null as stdin as an unchained one gets, forget the line, and carry on into
# the command, in the same shell ($0 is /bin/sh, and the shell execs the last command itself, as
# for an unchained task; one line, so the command's own line numbers stay as they were). End of
# input (taken back, or the launcher died) means never run.
GATE = "IFS= read -r labsweep_gate || exit 125; exec </dev/null; unset labsweep_gate; "

out_lock = threading.Lock()
# Guards every table below.
table_lock = threading.Lock()
task_of_pid = {}
# The Popen of each running task, kept until the reaper has reaped it: a Popen collected while
# its child runs is polled by subprocess's own cleanup, which would reap our child (or, after pid
# reuse, another one) behind the reaper's back.
popen_of_pid = {}
# Groups whose leader exited but which the agent has not yet finished with (it may still be
# waiting out a grace period): killed too if the agent dies now.
lingering = set()
# Chained requests waiting for a task to exit: the awaited task's id -> requests, and each
# waiting request's id -> the id it awaits.
chained_after = {}
awaits = {}
# Chained requests being started by another thread right now: still waited for.
starting = set()
# Processes held at their gate: request id -> (pid, the gate pipe's write end).
gates = {}
# Gated processes taken back: their exit is no news to the agent.
withdrawn = set()
# Chained requests whose gated process is being spawned (outside the lock), and those of them
# whose turn came meanwhile: the spawning thread opens their gate when it is done.
holding = set()
open_when_held = set()
# Exits of processes reaped before their spawner recorded them (only a gated process, killed
# the instant it was spawned, can be reaped so early).
early_exits = {}
have_children = threading.Event()
# The environments start requests are laid over, by number ({"base", "env"}).
bases = {}


def send(message):
    line = json.dumps(message) + "\n"
    with out_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def private_dir(path):
    """Makes a dir 0700, its missing parents too (os.makedirs gives parents the umask's mode).
    True if it was made now (so it holds nothing), False if it was there."""
    try:
        os.mkdir(path, 0o700)
        return True
    except FileExistsError:
        return False
    except FileNotFoundError:
        parent = os.path.dirname(path)
        if parent == path:
            raise
        private_dir(parent)
        return private_dir(path)


def overwrite(path, text):
    """Writes a file in place, 0600 where new, then cuts it to its length: never emptied first
    (O_TRUNC makes ext4 flush the blocks the file held at its close; see privateFiles.ts)."""
    data = text.encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def open_log(request):
    """The task's dirs made, files of an earlier attempt removed, its files written (its config),
    its log opened (appending)."""
    made = {path for path in request.get("dirs", ()) if private_dir(path)}
    for path in request.get("clear", ()):
        # A dir made just now holds no earlier attempt's files: three unlinks a task saved.
        if os.path.dirname(path) in made:
            continue
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    for path, text in request.get("files", ()):
        overwrite(path, text)
    return os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)  # the owner's alone


def spawn(request, argv, stdin, log_fd):
    """Starts a process in its own session and process group, output to the task's log (closed
    here). SIGPIPE and SIGXFSZ (which Python ignores) go back to their defaults. A cwd or exec
    failure raises."""
    try:
        env = request["env"]
        if "base" in request:
            env = {**bases[request["base"]], **env}
        return subprocess.Popen(
            argv,
            cwd=request["cwd"],
            env=env,
            stdin=stdin,
            stdout=log_fd,
            stderr=log_fd,
            start_new_session=True,
            restore_signals=True,
        )
    finally:
        os.close(log_fd)
        have_children.set()


def record(request, popen):
    """Under table_lock: the reaper may report this process from now on."""
    task_of_pid[popen.pid] = request["id"]
    popen_of_pid[popen.pid] = popen
    starting.discard(request["id"])


def start(request):
    """Starts a task now; the agent hears "started", or "error" if it could not start."""
    with table_lock:
        if request["id"] in holding:
            open_when_held.add(request["id"])
            return
        gate = gates.pop(request["id"], None)
        if gate is not None:
            starting.discard(request["id"])
            pid, go = gate
            # The gate opens first, "started" goes out at once; both under the lock the reaper
            # takes before it reports an exit, so the agent hears of the start first.
            try:
                os.write(go, b"go\n")
            except OSError:
                pass  # the gate process died: the reaper reports it
            send({"ev": "started", "id": request["id"], "pid": pid})
    if gate is not None:
        os.close(go)
        return
    try:
        # Outside the lock: the reaper must not wait for a mkdir.
        log_fd = open_log(request)
        # Spawned under the lock the reaper takes before it reports an exit: the process is
        # recorded before it can be reaped, and the agent hears of its start before its end.
        with table_lock:
            popen = spawn(request, ["/bin/sh", "-c", request["cmd"]], devnull, log_fd)
            record(request, popen)
            send({"ev": "started", "id": request["id"], "pid": popen.pid})
    except OSError as error:
        failed(request["id"], str(error))


def failed(request_id, message):
    """A task that could not start: those chained behind it need not wait."""
    send({"ev": "error", "id": request_id, "message": message})
    start_all(take_successors(request_id))


def take_successors(task):
    """The requests chained behind a task that ended (or never ran), now being started."""
    with table_lock:
        starting.discard(task)
        successors = chained_after.pop(task, [])
        for request in successors:
            awaits.pop(request["id"], None)
            starting.add(request["id"])
    return successors


def start_all(requests):
    for request in requests:
        start(request)


def hold(request):
    """Spawns a chained task's process now, held at its gate, outside the lock (a spawn takes
    milliseconds on a busy machine; the reaper must not wait for it). If it cannot be spawned
    now, it is spawned plainly when its turn comes, and fails then."""
    request_id = request["id"]
    with table_lock:
        if request_id not in awaits:
            return  # its turn came already: it is being started plainly
        holding.add(request_id)
    go_read, go = os.pipe()
    try:
        popen = spawn(request, ["/bin/sh", "-c", GATE + request["cmd"]], go_read, open_log(request))
    except OSError:
        popen = None
        os.close(go)
    finally:
        os.close(go_read)
    with table_lock:
        holding.discard(request_id)
        turn_came = request_id in open_when_held
        open_when_held.discard(request_id)
        # Killed the instant it was spawned: no gate; it is spawned plainly when its turn comes.
        if popen is not None and early_exits.pop(popen.pid, None) is None:
            record(request, popen)
            gates[request_id] = (popen.pid, go)
        elif popen is not None:
            os.close(go)
    if turn_came:
        start(request)


def unchain(request_id, dropping):
    """Takes a waiting chained request off its queue (under table_lock); None if not waiting.
    When it is dropped, the requests chained behind it wait for what it waited for instead."""
    after = awaits.pop(request_id, None)
    if after is None:
        return None
    waiting = chained_after.get(after, [])
    for request in waiting:
        if request["id"] == request_id:
            waiting.remove(request)
            for successor in chained_after.pop(request_id, []) if dropping else []:
                waiting.append(successor)
                awaits[successor["id"]] = after
            if not waiting:
                del chained_after[after]
            return request
    return None


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
                early_exits[pid] = status
                continue
            if task in withdrawn:
                withdrawn.discard(task)
                continue
            gate = gates.pop(task, None)
            if gate is not None:
                # Killed while held at its gate: it never ran, and is spawned plainly when its
                # turn comes.
                os.close(gate[1])
                continue
            lingering.add(pid)
        # The next task first: it is what the slot waits for; the agent can hear of this exit after.
        start_all(take_successors(task))
        if os.WIFSIGNALED(status):
            send({"ev": "exit", "id": task, "code": None, "signal": signal.Signals(os.WTERMSIG(status)).name})
        else:
            send({"ev": "exit", "id": task, "code": os.WEXITSTATUS(status), "signal": None})


threading.Thread(target=reap, daemon=True).start()
for line in sys.stdin:
    if not line.strip():
        continue
    request = json.loads(line)
    if "base" in request and "cmd" not in request:
        bases[request["base"]] = request["env"]
        continue
    if "forget" in request:
        pid = request["forget"]
        with table_lock:
            lingering.discard(pid)
            # Reaped long ago, its pid may lead one of our new tasks' groups by now: never kill that.
            reused = pid in task_of_pid
        if not reused:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass  # nobody left in the group: the usual case
        continue
    if "release" in request:
        with table_lock:
            waiting = unchain(request["release"], False)
            if waiting is not None:
                starting.add(waiting["id"])
        # Not waiting any more: it has started (or failed to), and the agent hears that instead.
        if waiting is not None:
            start(waiting)
        continue
    if "drop" in request:
        with table_lock:
            waiting = unchain(request["drop"], True)
            gate = gates.pop(request["drop"], None) if waiting is not None else None
            if gate is not None:
                withdrawn.add(request["drop"])
        if gate is not None:
            os.close(gate[1])  # end of input at the gate: the shell exits without running
        if waiting is not None:
            send({"ev": "dropped", "id": waiting["id"]})
        continue
    after = request.get("after")
    if after is not None:
        with table_lock:
            # Only a task running, starting, or itself waiting can be waited for: one that has
            # exited (or never started) already freed its slot.
            chained = after in awaits or after in starting or after in task_of_pid.values()
            if chained:
                chained_after.setdefault(after, []).append(request)
                awaits[request["id"]] = after
        if chained:
            hold(request)
            continue
    start(request)
# stdin closed: the agent exited or was killed. No task may outlive it, nor start after it.
with table_lock:
    orphans = list(task_of_pid) + list(lingering)
for pid in orphans:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
os._exit(0)
