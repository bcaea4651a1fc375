"""The guard as a standalone entrypoint: what a Ray job runs instead of the agent itself.

A remote backend (Ray's Jobs API) starts a shell command on some node and, to stop it,
sends SIGTERM to the processes it saw at that moment, then SIGKILL. That misses a
double-forked daemon and anything born after its snapshot. So the job's command is::

    exec python3 -S -c BOOT SPEC      # BOOT imports this module; SPEC is base64 JSON

and this process becomes the run's guard: a subreaper that forks the agent with the
run's cookie, and on SIGTERM (Ray's stop) runs the one ladder over its whole subtree.

Before it becomes a subreaper it double-forks a **watchdog** into a session of its own,
outside the tree (Ray neither snapshots it nor kills its process group). The watchdog
waits on the guard's pidfd; if the guard dies without leaving its verdict (Ray SIGKILLed
it, or the job runner died and took the guard's process group with it) the watchdog
sweeps every process that carries the run's cookie, with the same ladder.

The node is the only place that can prove the tree is dead, so the verdict travels as
a line of its own in the job's log (the kernel mirrors that log and parses these)::

    \\x1eRUNSTOP_NB KIND JSON

KIND is ``begin`` (the guard runs; the agent's output follows), ``started``, ``error``,
``exited`` and ``verdict``. The guard writes its verdict after the tree is dead, so no
output of the agent can follow it. Standard library only, like the rest of ``_proc``.
"""

from __future__ import annotations

import base64
import json
import os
import select
import signal
import socket
import sys
import tempfile
import time
from typing import Any

from . import procfs, wire
from .guard import PR_SET_CHILD_SUBREAPER, VERDICT_FILE, Guard, _write_verdict, prctl
from .ladder import climb
from .trees import ScanTree

MARK = "\x1eRUNSTOP_NB "  # starts every line this module writes to the job's log
WATCHDOG_GRACE = 2.0  # seconds: the watchdog's ask step, once the guard is gone


def emit(kind: str, body: object) -> None:
    """One marker line on stdout (the job's log), in a single write."""
    data = (MARK + kind + " " + json.dumps(body) + "\n").encode()
    try:
        os.write(1, data)
    except OSError:
        pass


def parse_marker(line: str) -> tuple[str, Any] | None:
    """``(kind, body)`` for a marker line, else None."""
    if not line.startswith(MARK):
        return None
    kind, _, rest = line[len(MARK):].rstrip("\n").partition(" ")
    try:
        return kind, json.loads(rest) if rest else None
    except ValueError:
        return None


def encode(spec: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(spec).encode()).decode("ascii")


def decode(text: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(base64.b64decode(text))
    return data


class StandaloneGuard(Guard):
    """A guard whose messages go to the job's log as marker lines (there is no kernel socket)."""

    def send(self, kind: str, body: object) -> None:
        emit(kind, body)


def agent_spec(spec: dict[str, Any], log_dir: str) -> dict[str, Any]:
    """The guard's spec on this node: the node's environment plus the run's overrides and
    markers, output to this process's stdout and stderr (the job's log)."""
    env = dict(os.environ)
    for key, value in (spec.get("env_overrides") or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    env[procfs.COOKIE_VAR] = spec["cookie"]  # only the agent's tree carries it, never Ray's own processes
    env[procfs.RUN_ID_VAR] = spec["run_id"]
    cwd = spec.get("cwd") or ""
    return {
        "run_id": spec["run_id"], "argv": spec["argv"], "env": env,
        "cwd": cwd if cwd and os.path.isdir(cwd) else os.getcwd(),
        "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2", "log_dir": log_dir,
        "grace": float(spec["grace"]), "started_at": time.time(), "cgroup": None,
        "containment": "guard", "order": None, "stdin": "null",
    }


def watchdog(guard_fd: int, cookie: str, started_at: float, log_dir: str) -> None:
    """In its own session, outside the tree: when the guard dies without a verdict, sweep the cookie."""
    os.setsid()
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    try:
        select.select([guard_fd], [], [])  # a pidfd turns readable when its process exits
    except OSError:
        pass
    try:
        if not os.path.exists(os.path.join(log_dir, VERDICT_FILE)):
            tree = ScanTree(cookie, started_at=started_at, protect={os.getpid()})
            verdict = climb(tree, WATCHDOG_GRACE)
            note = "the guard died before its verdict; the watchdog swept the run's cookie"
            emit("verdict", {**verdict.to_json(), "note": note, "cause": "guard_lost", "returncode": None,
                             "ended_at": time.time()})
    finally:
        _remove(log_dir)


def _remove(folder: str) -> None:
    for name in (VERDICT_FILE, VERDICT_FILE + ".tmp", "guard.log"):
        try:
            os.unlink(os.path.join(folder, name))
        except OSError:
            pass
    try:
        os.rmdir(folder)
    except OSError:
        pass


def _start_watchdog(spec: dict[str, Any], log_dir: str) -> None:
    guard_fd = os.pidfd_open(os.getpid())
    pid = os.fork()
    if pid == 0:
        try:
            if os.fork() == 0:  # the grandchild: init (not our subreaper, not yet one) adopts it
                watchdog(guard_fd, spec["cookie"], time.time(), log_dir)
        finally:
            os._exit(0)
    os.close(guard_fd)
    os.waitpid(pid, 0)


def _append_only(fd: int) -> None:
    """Reopen a log file on ``fd`` for appending: the agent appends to it too, and a plain
    offset here would overwrite what it wrote."""
    import stat

    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            new = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_APPEND)
            os.dup2(new, fd)
            os.close(new)
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    """Run one agent to its verified end; return its exit status for the job."""
    args = sys.argv[1:] if argv is None else argv
    spec = decode(args[0])
    _append_only(1)
    _append_only(2)
    start_by = float(spec.get("start_by") or 0)
    if start_by and time.time() > start_by:  # the kernel stopped waiting for this job: run nothing
        emit("error", {"stage": "late", "errno": 0, "message": "the job started after its start deadline"})
        return 125
    log_dir = tempfile.mkdtemp(prefix="runstop-ray-")
    _start_watchdog(spec, log_dir)  # before the subreaper flag: it must not be in our tree
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda s, f: None)
    mine, theirs = socket.socketpair()
    guard = StandaloneGuard(theirs, None, 0, agent_spec(spec, log_dir), wake_r, standalone=True)

    def on_stop(signum: int, frame: object) -> None:
        guard.term = True  # Ray's stop_job: the guard's select wakes through the wakeup fd

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    me = procfs.stat(os.getpid())
    emit("begin", {"guard": os.getpid(), "guard_start": me.start if me else 0, "node": socket.gethostname()})
    if not guard.start():
        _write_verdict(log_dir, {"cause": "error"})  # nothing ran: the watchdog has nothing to sweep
        return 127
    mine.setblocking(False)
    try:
        for kind, body in wire.Lines().feed(mine.recv(1 << 16)):
            if kind == "started":
                emit("started", {**body, "node": socket.gethostname(), "cwd": guard.spec["cwd"]})
    except OSError:
        pass
    guard.serve()  # ends with the verdict, on disk too: the watchdog then only tidies up
    code = guard.returncode
    if code is None:
        return 0 if guard.term else 1
    return code if code >= 0 else 128 - code


def boot_code() -> str:
    """The ``-c`` program a job runs: ``_proc`` as shipped to the node (``py_modules``, on
    PYTHONPATH), else this machine's copy; then :func:`main`."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return f"import sys; sys.path.append({json.dumps(here)}); from _proc.standalone import main; sys.exit(main())"
