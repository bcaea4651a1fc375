"""Code the benchmarks run inside the kernel at scale: P9's 200 trees and the curves' samples.

Like ``_inkernel``, each function times itself with ``perf_counter`` inside the kernel and
returns a JSON-able dict, and every runstop figure has a raw baseline on the same command.
Whatever a function starts, a later call here (or the benchmark's ``leftovers``) ends by pid.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil
from _inkernel import _dead, _kill, _poll

import runstop_nb

# A cooperative tree of three: sh and two sleeps, every member dies on SIGTERM.
TREE = "sleep 3600 & sleep 3600 & wait"
TREE_SIZE = 3
_board: Any = None
_raw: list[subprocess.Popen[bytes]] = []


def _members(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def start_trees(n: int) -> dict[str, Any]:
    """P9: start ``n`` cooperative trees through the API from a 16-thread pool (as the magic
    does), not shown; time until every start() returned, then until every tree is complete."""
    t0 = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        started = list(pool.map(lambda i: runstop_nb.start(["sh", "-c", TREE], name=f"p9-{i}", grace=3.0),
                                range(n)))
    returned = time.perf_counter() - t0
    _poll(lambda: all(r.pid and len(_members(r.pid)) == TREE_SIZE for r in started), 60,
          f"{n} trees of {TREE_SIZE}", delay=0.05)
    return {"s": returned, "complete_s": time.perf_counter() - t0,
            "running": sum(r.status == "running" for r in started),
            "cookies": [r.spec.cookie for r in started], "pids": [r.pid for r in started]}


def show_dashboard() -> dict[str, Any]:
    """Display the compact dashboard (one live table of every run) in this cell."""
    global _board
    from IPython.display import display

    _board = runstop_nb.dashboard()
    display(_board)  # type: ignore[no-untyped-call]
    return dashboard_rows()


def dashboard_rows() -> dict[str, Any]:
    """How many rows the displayed dashboard holds, and how many of them are runs not yet ended."""
    rows = list(_board.rows) if _board is not None else []
    return {"rows": len(rows), "live": sum(1 for r in rows if not r.get("done"))}


def close_dashboard() -> None:
    global _board
    if _board is not None:
        _board.close()
        _board = None


def stop_all_timed() -> dict[str, Any]:
    """``runstop_nb.stop_all()`` (default grace), timed until it returns."""
    live = [r for r in runstop_nb.runs() if not r.done]
    members = [p for r in live for p in r.members()]
    t0 = time.perf_counter()
    results = runstop_nb.stop_all()
    elapsed = time.perf_counter() - t0
    return {"s": elapsed, "n": len(results), "stopped": sum(r.stopped for r in results),
            "escalated": sum(r.escalated for r in results),
            "members_dead": all(_dead(p) for p in members), "members": len(members)}


def raw_stop_trees(n: int) -> dict[str, Any]:
    """P9's baseline: the same ``n`` trees Popen'd in new sessions, then killpg(TERM) each
    and wait, until every member is dead or a zombie."""
    procs = [subprocess.Popen(["sh", "-c", TREE], start_new_session=True, stdin=subprocess.DEVNULL)
             for _ in range(n)]
    members: list[psutil.Process] = []
    try:
        _poll(lambda: all(len(_members(p.pid)) == TREE_SIZE for p in procs), 60, f"{n} raw trees", delay=0.05)
        members = [m for p in procs for m in _members(p.pid)]
        t0 = time.perf_counter()
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            p.wait()
        _poll(lambda: all(_dead(m) for m in members), 30, "the raw trees to die", delay=0.001)
        return {"s": time.perf_counter() - t0, "members": len(members)}
    finally:
        _kill(members)
        for p in procs:
            p.wait()


# -- curves ----------------------------------------------------------------------------------


def raw_sleepers(n: int) -> dict[str, Any]:
    """The agents curve's baseline: Popen ``n`` sleeps (new sessions) from this cell; time
    until every one is running. They stay up (for the CPU curve) until ``stop_raw``."""
    t0 = time.perf_counter()
    for _ in range(n):
        _raw.append(subprocess.Popen(["sleep", "3600"], start_new_session=True, stdin=subprocess.DEVNULL))
    _poll(lambda: all(not _dead(psutil.Process(p.pid)) for p in _raw), 30, f"{n} raw sleeps", delay=0.001)
    return {"s": time.perf_counter() - t0, "n": len(_raw)}


def stop_raw() -> None:
    for p in _raw:
        p.kill()
        p.wait()
    _raw.clear()
