"""The recorder: keeps each run's history row current, from one background thread.

A run's listeners fire on the stop path, and a write can wait up to ``BUSY_MS`` behind
another kernel's, so no caller ever writes: it hands the run to this thread and moves on.
The thread reads the run's state when it writes, so the row is always the latest state,
and bursts of changes collapse into one write. Two moments wait (briefly) for the write
to land, so that a crash right after them still finds it: ``start()`` returning, and a
run ending.

While this kernel has live runs the thread also polls, every ``POLL`` seconds, for
``runstop stop`` requests (the CLI marks the row; the owning kernel stops the run the
way its Stop button would), and refreshes line and byte counts every ``PROGRESS_EVERY``.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._api import NEW_RUN
from ._history import store_for
from ._home import DB_NAME
from ._kernelstate import kernel_state
from ._record import stop_columns
from ._spec import owner_marker
from ._threads import forever

if TYPE_CHECKING:
    from ._run import Run

log = logging.getLogger("runstop_nb")
POLL = 0.5  # seconds: how soon a `runstop stop` request is acted on
PROGRESS_EVERY = 2.0  # seconds between line/byte count refreshes of live runs
REQUERY_EVERY = 10.0  # seconds: stop requests are looked up at least this often, written or not
WRITE_WAIT = 0.5  # seconds start() and a run's end wait (at most) for their row to land
HOST = socket.gethostname()
_identity: tuple[int, float] | None = None


def kernel_identity() -> tuple[int, float]:
    """This process's pid and start time, exactly as RUNSTOP_NB_OWNER writes them."""
    global _identity
    pid = os.getpid()
    if _identity is None or _identity[0] != pid:  # a forked child is another owner
        text_pid, _, start = owner_marker().partition(":")
        _identity = (int(text_pid), float(start))
    return _identity


def db_of(run: Run) -> Path:
    """The database of the runs home the run was started in (its logs are in home/runs/ID)."""
    return run.log_dir.parent.parent / DB_NAME


def run_row(run: Run) -> dict[str, Any]:
    """The run's whole history row, as of now."""
    spec = run.spec
    state = run.state()  # status, returncode and ended_at change together
    status, returncode, ended = state.status, state.returncode, state.ended_at
    kernel_pid, kernel_ctime = kernel_identity()
    agent = run.agent
    env = spec.env_overrides
    command = spec.command if isinstance(spec.command, str) else list(spec.command)
    return {
        "id": run.id, "name": run.name, "status": status, "returncode": returncode,
        "started_at": run.started_at.timestamp(), "ended_at": ended.timestamp() if ended else None,
        "argv": json.dumps(list(run.argv)), "command": json.dumps(command), "shell": int(spec.shell),
        "cwd": run.cwd,
        "env_keys": json.dumps(sorted(k for k, v in env.items() if v is not None)),
        "env_unset": json.dumps(sorted(k for k, v in env.items() if v is None)),
        "timeout": spec.timeout, "grace": spec.grace, "pid": state.pid, "error": state.error,
        "kernel_pid": kernel_pid, "kernel_ctime": kernel_ctime, "host": HOST, "cookie": spec.cookie,
        "log_dir": str(run.log_dir), "lines": run.lines, "bytes": run.bytes,
        "containment": state.containment, "cgroup": state.cgroup, "uid": os.getuid() if hasattr(os, "getuid") else None,
        "format": run.format, "agent": json.dumps(agent.as_dict()) if agent is not None else None,
        "parent_id": run.parent, "input": "pty" if spec.pty else "pipe" if spec.stdin else "null",
        "worktree": json.dumps(dataclasses.asdict(run.worktree)) if run.worktree is not None else None,
        "options": json.dumps({"idle": spec.idle, "max_cost": spec.max_cost, "max_tokens": spec.max_tokens,
                               "containment": spec.containment, "format": spec.format,
                               "backend": run.backend, **ray_columns(run)}, default=str),
        **stop_columns(state.last_stop), "updated_at": time.time(),
    }


def ray_columns(run: Run) -> dict[str, Any]:
    """A Ray run's cluster, job and node, and its Ray options, for the history and a rerun.
    Values of ``runtime_env["env_vars"]`` are not kept (they may be secrets), only keys."""
    job = run.ray_job
    if job is None:
        return {}
    options = run.ray_options or {}
    runtime_env = dict(options.get("runtime_env") or {})
    if "env_vars" in runtime_env:
        runtime_env["env_var_keys"] = sorted(runtime_env.pop("env_vars"))
        options["runtime_env"] = runtime_env
    return {"ray": job, "ray_options": options}


class Recorder:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self._cond = threading.Condition()
        self._pending: dict[str, Run] = {}
        self._live: dict[str, Run] = {}
        self._asked: set[str] = set()
        self._signatures: dict[Path, tuple[tuple[int, ...], float]] = {}  # db -> (signature, when queried)
        self._counts: dict[str, tuple[int, int]] = {}
        self._submitted = 0
        self._written = 0
        self._next_poll = self._next_progress = time.monotonic()
        self._thread = forever(self._step, "runstop-history", pause=POLL)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and self.pid == os.getpid()

    def add(self, run: Run) -> None:
        """Record a new run now, and again on every status change."""
        with self._cond:
            self._live[run.id] = run
        run.add_listener(self._on_change)
        self.wait(self.submit(run), WRITE_WAIT)

    def _on_change(self, run: Run) -> None:
        seq = self.submit(run)
        if run.done:
            self.wait(seq, WRITE_WAIT)

    def submit(self, run: Run) -> int:
        with self._cond:
            self._pending[run.id] = run
            self._submitted += 1
            self._cond.notify_all()
            return self._submitted

    def wait(self, seq: int, timeout: float) -> bool:
        """Wait until submission ``seq`` is written; False on timeout."""
        if threading.current_thread() is self._thread:
            return False  # the writer cannot wait for itself
        with self._cond:
            return self._cond.wait_for(lambda: self._written >= seq, timeout)

    def flush(self, timeout: float = WRITE_WAIT) -> bool:
        """Wait for pending writes, including the end of any run that ended a moment ago.

        ``run.wait()`` returns as soon as the run is done, a moment before its listeners
        (this one included) hear of it; resubmitting done runs closes that gap.
        """
        with self._cond:
            for run in self._live.values():
                if run.done:
                    self._pending[run.id] = run
                    self._submitted += 1
            self._cond.notify_all()
            seq = self._submitted
        return self.wait(seq, timeout)

    def _step(self) -> None:
        """One turn: write what is pending; poll CLI stop requests; refresh counts."""
        with self._cond:
            if not self._pending:
                self._cond.wait(POLL if self._live else None)
            batch, self._pending = self._pending, {}
            target = self._submitted
        for run in batch.values():
            self._write(run)
        with self._cond:
            self._written = max(self._written, target)
            self._cond.notify_all()
        now = time.monotonic()
        if self._live and now >= self._next_poll:
            self._next_poll = now + POLL
            self._poll_requests()
        if self._live and now >= self._next_progress:
            self._next_progress = now + PROGRESS_EVERY
            self._refresh_counts()

    def _write(self, run: Run) -> None:
        try:
            row = run_row(run)
            store_for(db_of(run)).upsert(row)
            self._counts[run.id] = (row["lines"], row["bytes"])
        except Exception as e:  # a history failure must never reach the run
            log.warning("runstop_nb: could not record run %s in the history (%s)", run.id, e)
        if run.done:
            with self._cond:
                self._live.pop(run.id, None)
                self._counts.pop(run.id, None)

    def _poll_requests(self) -> None:
        """Stop the runs that ``runstop stop`` asked for, each on its own thread."""
        with self._cond:
            live = list(self._live.values())
        by_db: dict[Path, list[Run]] = {}
        for run in live:
            by_db.setdefault(db_of(run), []).append(run)
        now = time.monotonic()
        for path, runs in by_db.items():
            store = store_for(path)
            if not store.exists():
                continue
            # Read first, query after: a write that lands during the query changes it again.
            sig = _file_signature(path)
            seen = self._signatures.get(path)
            if seen is not None and seen[0] == sig and now - seen[1] < REQUERY_EVERY:
                continue  # nothing was written to the history since the last look
            self._signatures[path] = (sig, now)
            try:
                wanted = {i: g for i, g in store.stop_requests(r.id for r in runs).items() if i not in self._asked}
            except Exception as e:
                log.debug("runstop_nb: could not read stop requests from %s: %s", path, e)
                continue
            for run in runs:
                if run.id in wanted:
                    self._asked.add(run.id)
                    threading.Thread(target=run.stop_for, args=("cli", wanted[run.id]),
                                     name=f"runstop-cli-stop-{run.name}", daemon=True).start()

    def _refresh_counts(self) -> None:
        with self._cond:
            live = list(self._live.values())
        for run in live:
            seen = self._counts.get(run.id)
            if seen is not None and seen[1] == run.bytes:
                continue  # no new byte, no new line: and the byte count costs nothing to read
            if seen != (run.lines, run.bytes):
                self._write(run)


def _file_signature(db: Path) -> tuple[int, ...]:
    """Sizes and modification times of a database and its WAL: they change on any write."""
    out: list[int] = []
    for path in (db, db.with_name(db.name + "-wal")):
        try:
            st = os.stat(path)
        except OSError:
            out += [0, 0]
            continue
        out += [st.st_mtime_ns, st.st_size]
    return tuple(out)


def _new_recorder() -> Recorder:
    rec = Recorder()
    atexit.register(rec.flush)  # a normal exit writes what is pending
    return rec


def recorder() -> Recorder:
    """This kernel's recorder (kept in the reload-proof kernel state)."""
    return kernel_state().service("recorder", _new_recorder, lambda r: r.alive)


def install() -> None:
    """Record every run this kernel starts (idempotent; called on import of runstop_nb)."""
    kernel_state().hook(NEW_RUN, f"{__name__}:track")


def track(run: Run) -> None:
    """Record ``run`` in its runs home's history, now and on every status change. Never raises."""
    try:
        recorder().add(run)
    except Exception:
        log.exception("runstop_nb: could not record run %s in the history; the run is unaffected", run.id)


def flush(timeout: float = WRITE_WAIT) -> None:
    """Wait (at most ``timeout``) until this kernel's pending history writes have landed."""
    rec: Recorder | None = kernel_state().peek("recorder")
    if rec is not None and rec.alive:
        rec.flush(timeout)
