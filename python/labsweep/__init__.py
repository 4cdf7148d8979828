"""labsweep's client for training scripts: parameters in; curves, results and stops out.

Standard library only, Python 3.8+. Every task labsweep runs can ``import labsweep`` with
nothing installed: the agent puts this package on ``PYTHONPATH``. Run by hand, outside
labsweep, every call still works, so a script stays runnable on its own::

    import labsweep

    p = labsweep.params()                      # {"lr": 0.1, "seed": 42, ...}
    for epoch in range(start, p["epochs"]):
        loss = train_one_epoch()
        labsweep.report(epoch, loss=loss, val={"acc": acc})   # -> "val.acc"
        save(labsweep.checkpoint_dir() / "last.pt")
        if labsweep.should_stop():             # preemption, timeout, cancel, Ctrl-C
            sys.exit(0)                        # the next attempt resumes from the checkpoint
    labsweep.result(acc=acc, loss=loss)

The protocol under it (environment variables and a file of JSON lines) is written out in
``docs/task-protocol.md``, for scripts in other languages.
"""

from __future__ import annotations

import atexit
import json
import math
import operator
import os
import pathlib
import signal
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Mapping, Optional

__all__ = [
    "params",
    "task_id",
    "attempt",
    "report",
    "result",
    "checkpoint_dir",
    "work_dir",
    "should_stop",
    "FLUSH_INTERVAL",
    "MAX_LINE_BYTES",
    "RESULT_LIMIT_BYTES",
]

#: Reports are written at most this often (seconds), and at result(), at exit and on a stop.
FLUSH_INTERVAL = 0.25
#: A report line longer than this (UTF-8 bytes) is refused: the agent's relay drops such lines.
MAX_LINE_BYTES = 64 * 1024
#: The largest result the agent takes (LABSWEEP_RESULT_FILE); a larger one fails the attempt.
RESULT_LIMIT_BYTES = 256 * 1024
#: The stop file is looked for at most this often (seconds): a stat is cheap, not free.
STOP_CHECK_INTERVAL = 0.1
# Buffered reports are written once they reach this size too, whatever the time.
_FLUSH_BYTES = 256 * 1024
# The agent's rule (src/protocol/metricNames.ts): a metric tree is a few levels, never data.
_MAX_DEPTH = 8


def _under_labsweep() -> bool:
    return bool(os.environ.get("LABSWEEP_TASK_ID"))


# --- who am I -------------------------------------------------------------------------------


def params() -> Dict[str, Any]:
    """The task's parameters (``$LABSWEEP_PARAMS``), a fresh dict on every call.

    Outside labsweep: ``{}``, or ``$LABSWEEP_PARAMS`` when you set it yourself.
    """
    text = os.environ.get("LABSWEEP_PARAMS")
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as error:
        raise ValueError(f"LABSWEEP_PARAMS is not valid JSON ({error}): {text[:200]}") from None
    if not isinstance(value, dict):
        raise ValueError(f"LABSWEEP_PARAMS must be a JSON object, got: {text[:200]}")
    return value


def task_id() -> Optional[int]:
    """The task's id in the ledger (``$LABSWEEP_TASK_ID``); None outside labsweep."""
    return _int_env("LABSWEEP_TASK_ID")


def attempt() -> Optional[int]:
    """This attempt's id in the ledger (``$LABSWEEP_ATTEMPT_ID``), new for every retry; None outside."""
    return _int_env("LABSWEEP_ATTEMPT_ID")


def _int_env(name: str) -> Optional[int]:
    text = os.environ.get(name)
    return int(text) if text else None


# --- metric names ---------------------------------------------------------------------------


def _flatten(metrics: Mapping[Any, Any]) -> Dict[str, Any]:
    """Nested dicts as dotted names: ``{"val": {"acc": 1}}`` -> ``{"val.acc": 1}``.

    Two paths to one name (``{"a.b": 1, "a": {"b": 2}}``) are a ValueError naming it, never one
    silently overwriting the other; so are an empty key and nesting deeper than 8 levels.
    """
    flat: Dict[str, Any] = {}
    _flatten_into(flat, metrics, "", 0)
    return flat


def _flatten_into(flat: Dict[str, Any], value: Mapping[Any, Any], prefix: str, depth: int) -> None:
    if depth >= _MAX_DEPTH:
        raise ValueError(f"metric {prefix!r} nests deeper than {_MAX_DEPTH} levels")
    for key, inner in value.items():
        key = _key_name(key, prefix)
        name = key if prefix == "" else f"{prefix}.{key}"
        if isinstance(inner, Mapping):
            _flatten_into(flat, inner, name, depth + 1)
            continue
        if name in flat:
            raise ValueError(f"metric {json.dumps(name)} is given twice (once nested, once dotted)")
        flat[name] = inner


def _key_name(key: Any, prefix: str) -> str:
    # Integer keys ({"layer": {0: ...}}) read naturally as "layer.0"; json.dumps agrees.
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        raise TypeError(f"metric names must be strings, got {key!r} in {prefix or '(top)'!r}")
    if key == "":
        raise ValueError(f"metric {prefix or '(top)'!r} has a key that is empty")
    return str(key)


def _plain(value: Any) -> Any:
    """A numpy or torch scalar (anything with ``.item()``) as the Python number it holds."""
    item = getattr(value, "item", None)
    if item is not None and not isinstance(value, (int, float, str)):
        try:
            return item()
        except Exception:  # a tensor of many elements has no one number: left as it is
            return value
    return value


# --- live reports ---------------------------------------------------------------------------


class _Reports:
    """Report lines waiting to be appended to ``$LABSWEEP_EVENTS_FILE``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lines: List[str] = []
        self.size = 0
        self.last_write = time.monotonic()
        self.fd: Optional[int] = None
        self.owner = os.getpid()
        self.dropped: set = set()

    def add(self, line: str) -> None:
        with self.lock:
            self.lines.append(line)
            self.size += len(line)
            if self.size >= _FLUSH_BYTES or time.monotonic() - self.last_write >= FLUSH_INTERVAL:
                self._write()

    def flush(self, wait: bool = True) -> None:
        """Writes what is buffered; with ``wait=False`` (a signal handler) only if no one else is."""
        if not self.lock.acquire(blocking=wait):
            return
        try:
            self._write()
        finally:
            self.lock.release()

    def _write(self) -> None:
        self.last_write = time.monotonic()
        if not self.lines:
            return
        data = "".join(self.lines).encode("utf-8")
        self.lines = []
        self.size = 0
        if os.getpid() != self.owner:
            # A forked child (a DataLoader worker) inherited its parent's buffer: the parent
            # writes those lines; the child starts afresh.
            self.owner = os.getpid()
            return
        path = os.environ.get("LABSWEEP_EVENTS_FILE")
        if not path:
            return
        if self.fd is None:
            self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        # One write of whole lines on an O_APPEND descriptor: a reader never sees half a line
        # from a crash mid-buffer. A regular file takes it all; the loop is for a full disk's
        # short write.
        while data:
            data = data[os.write(self.fd, data) :]


_reports = _Reports()


def report(step: int, /, **metrics: Any) -> None:
    """Records intermediate metrics at ``step`` (a learning curve); cheap enough for every step.

    Nested dicts become dotted names (``val={"acc": 0.9}`` -> ``val.acc``). Only finite numbers
    are kept: NaN, infinities and non-numbers are left out, with one warning per name on
    stderr. Reports are buffered and written at most every 0.25 s, at ``result()``, at exit
    and when ``should_stop()`` turns true. Outside labsweep this does nothing unless
    ``$LABSWEEP_EVENTS_FILE`` is set.
    """
    step = operator.index(step)
    if step < 0:
        raise ValueError(f"report step must be a non-negative integer, got {step}")
    # The line is put together by hand: json.dumps of the whole record costs ten times more,
    # and a finite float's repr is valid JSON already.
    parts = _metric_parts(metrics)
    if parts is None:  # nested dicts (or an empty name): flattened first, the rare case
        parts = _metric_parts(_flatten(metrics)) or []
    line = '{"type": "report", "step": %d, "time": %r, "metrics": {%s}}\n' % (step, time.time(), ", ".join(parts))
    if len(line) > MAX_LINE_BYTES:
        raise ValueError(
            f"report at step {step} is {len(line)} bytes as JSON; the limit is "
            f"{MAX_LINE_BYTES} (report a few scalars per step; write larger things to files)"
        )
    _reports.add(line)


_FLOAT_MAX = sys.float_info.max
_FLOAT_MIN = -_FLOAT_MAX
# Metric name -> its JSON key text ('"loss": '); names repeat every step. Bounded, in case a
# script puts the step in its metric names.
_NAMES: Dict[str, str] = {}


def _name_json(name: str) -> str:
    key = json.dumps(name) + ": "
    if len(_NAMES) < 10_000:
        _NAMES[name] = key
    return key


def _number(value: Any) -> Optional[str]:
    """A finite number's JSON text (numpy/torch scalars included), or None for anything else."""
    value = _plain(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        # Beyond a double's range a reader would see infinity.
        return str(int(value)) if _FLOAT_MIN <= value <= _FLOAT_MAX else None
    if isinstance(value, float) and _FLOAT_MIN <= value <= _FLOAT_MAX:
        return float.__repr__(value)
    return None


def _metric_parts(metrics: Mapping[str, Any]) -> Optional[List[str]]:
    """`"name": number` texts of the finite numbers, or None if a value is a dict to flatten."""
    parts = []
    for name, value in metrics.items():
        if type(value) is float and _FLOAT_MIN <= value <= _FLOAT_MAX:
            text = repr(value)
        elif name == "" or isinstance(value, dict):
            return None
        else:
            text = _number(value)
            if text is None:
                _warn_dropped(name, value)
                continue
        key = _NAMES.get(name)
        parts.append((key if key is not None else _name_json(name)) + text)
    return parts


def _warn_dropped(name: str, value: Any) -> None:
    if name in _reports.dropped:
        return
    _reports.dropped.add(name)
    what = repr(value) if isinstance(value, float) else type(value).__name__
    print(
        f"labsweep: report() keeps finite numbers only; {name!r} ({what}) is left out "
        "(said once per metric)",
        file=sys.stderr,
        flush=True,
    )


@atexit.register
def _flush_at_exit() -> None:
    _reports.flush()


# --- the result -----------------------------------------------------------------------------


def result(**metrics: Any) -> None:
    """Records the task's final metrics: a row of the sweep's results CSV.

    Nested dicts become dotted columns (``val={"acc": 1}`` -> ``val.acc``); a name reached twice
    is a ValueError. Values are numbers, strings, booleans, None or lists; numpy/torch scalars
    are turned into Python numbers, and NaN/inf are written as the strings "nan", "inf",
    "-inf" (JSON has no NaN; pandas reads them back as floats). The file
    ``$LABSWEEP_RESULT_FILE`` is replaced atomically, so calling this again replaces the
    result. Without ``$LABSWEEP_RESULT_FILE`` (run by hand) the result is printed to stderr as
    one JSON line.
    """
    flat = {name: _result_value(name, value) for name, value in _flatten(metrics).items()}
    text = json.dumps(flat) + "\n"
    size = len(text.encode("utf-8"))
    if size > RESULT_LIMIT_BYTES:
        raise ValueError(
            f"the result is {size} bytes of JSON; the limit is {RESULT_LIMIT_BYTES} (write large "
            "outputs to files of your own and put their paths in the result)"
        )
    _reports.flush()
    path = os.environ.get("LABSWEEP_RESULT_FILE")
    if not path:
        sys.stderr.write(text)
        sys.stderr.flush()
        return
    _replace(path, text)


def _result_value(name: str, value: Any) -> Any:
    value = _plain(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    try:
        json.dumps(value, allow_nan=False, default=_json_item)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"result metric {name!r} is not JSON ({error}): give numbers, strings, booleans, "
            "None or lists of them"
        ) from None
    return json.loads(json.dumps(value, default=_json_item)) if isinstance(value, list) else value


def _json_item(value: Any) -> Any:
    plain = _plain(value)
    if plain is value:
        raise TypeError(f"{type(value).__name__} {value!r:.80}")
    return plain


def _replace(path: str, text: str) -> None:
    # A temp file beside it, then a rename: the agent never reads a half-written result, even
    # when the task is killed mid-write. mkstemp makes it 0600: the agent creates no result file,
    # and what a task creates is private only if the task makes it so.
    fd, temp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".result-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise


# --- checkpoints ----------------------------------------------------------------------------


def checkpoint_dir() -> pathlib.Path:
    """A directory that survives the task's attempts: save here, and resume from what is here.

    ``$LABSWEEP_CHECKPOINT_DIR`` (the same for every attempt of a task, and a different one for
    every task); ``./checkpoints`` outside labsweep. Created if missing.
    """
    path = pathlib.Path(os.environ.get("LABSWEEP_CHECKPOINT_DIR") or "checkpoints")
    path.mkdir(parents=True, exist_ok=True)
    return path


def work_dir() -> pathlib.Path:
    """This attempt's own directory: write files the phase's ``artifacts:`` globs collect here.

    ``$LABSWEEP_WORK_DIR`` (new and empty for every attempt, removed once its artifacts are
    taken); ``.`` outside labsweep, so a script run by hand writes beside itself.
    """
    return pathlib.Path(os.environ.get("LABSWEEP_WORK_DIR") or ".")


# --- stops ----------------------------------------------------------------------------------


class _Stop:
    """Whether labsweep (or, run by hand, the user) asked this process to stop."""

    def __init__(self) -> None:
        self.requested = False
        self.listening = False
        self.told = False
        self.next_check = 0.0
        # signal number -> the handler ours replaced, restored for a script that is not listening.
        self.previous: Dict[int, Any] = {}

    def install(self, signum: int) -> None:
        """Takes `signum` over if no one else has (the default handler) and we can (main thread)."""
        if signum in self.previous or threading.current_thread() is not threading.main_thread():
            return
        current = signal.getsignal(signum)
        if current not in (signal.SIG_DFL, signal.default_int_handler):
            return
        self.previous[signum] = current
        signal.signal(signum, self.handle)

    def handle(self, signum: int, frame: Any) -> None:
        if self.listening and not (self.requested and not _under_labsweep()):
            self.requested = True
            return
        # Not listening (or, by hand, a second Ctrl-C): the signal does what it did before
        # labsweep was imported. Reports buffered so far are written first if no one is writing.
        _reports.flush(wait=False)
        previous = self.previous.pop(signum)
        signal.signal(signum, previous)
        if callable(previous):
            previous(signum, frame)
        else:
            os.kill(os.getpid(), signum)

    def check(self) -> bool:
        self.listening = True
        if self.requested:
            return True
        path = os.environ.get("LABSWEEP_STOP_FILE")
        if path:
            now = time.monotonic()
            if now >= self.next_check:
                self.next_check = now + STOP_CHECK_INTERVAL
                self.requested = os.path.exists(path)
        return self.requested


_stop = _Stop()


def should_stop() -> bool:
    """True once labsweep asked the task to stop (preemption, timeout, cancel, Ctrl-C).

    Call it in the training loop; when it turns true, save a checkpoint and exit: the agent
    kills what is left after the grace period. Calling it once means the script listens:
    from then on the stop signal (``$LABSWEEP_STOP_SIGNAL``, SIGTERM by default) only sets
    the flag. A script that never calls it dies by the signal as it always did. Run by hand,
    it turns true after the first Ctrl-C or SIGTERM; a second one acts as usual.
    """
    if not _stop.listening and not _under_labsweep():
        _stop.install(signal.SIGINT)
        _stop.install(signal.SIGTERM)
    if not _stop.check():
        return False
    if not _stop.told:
        # The script is about to checkpoint and exit: its curve so far goes out first.
        _stop.told = True
        _reports.flush()
    return True


def _install_stop_signal() -> None:
    name = os.environ.get("LABSWEEP_STOP_SIGNAL") or "SIGTERM"
    signum = getattr(signal, name, None)
    if not isinstance(signum, signal.Signals):
        print(f"labsweep: LABSWEEP_STOP_SIGNAL={name!r} is no signal here; using SIGTERM", file=sys.stderr)
        signum = signal.SIGTERM
    _stop.install(signum)


if _under_labsweep():
    _install_stop_signal()
