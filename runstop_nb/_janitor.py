"""The janitor: finds agent process trees whose kernel is dead, and stops them.

Every agent and guard carries ``RUNSTOP_NB_COOKIE`` (one uuid per run) and
``RUNSTOP_NB_OWNER=<kernel pid>:<kernel create time>`` in its environment, so one pass
over ``/proc/*/environ`` groups this user's runstop_nb processes by run and tells, by pid
*and* create time (a recycled pid is not the kernel), whether their kernel still lives.
A tree normally never outlives its kernel: the guard stops it. It does when the guard
died with the kernel (an OOM kill of the whole cgroup, a ``kill -9`` of both).

What ``%load_ext runstop_nb`` does with them (``load_report``):

* trees whose cookie is recorded in **this** runs home's history are stopped, in the
  background, with the usual ladder. They are unambiguously this project's, nobody can
  control them any more (their kernel is gone), and they are the very leak runstop_nb
  exists to prevent: had their guard lived, it would have stopped them too;
* trees from elsewhere (another project's runs home, or no history) are only reported,
  with the command that stops them: another project's folder is not ours to act on.
  ``runstop_nb.reap_orphans()`` and ``runstop reap`` stop them all;
* a tree whose guard is alive and not stopped is left alone: its guard is stopping it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import psutil

from ._history import Store, db_path, store_for
from ._ladder import COOKIE_VAR, CTIME_SLACK, OWNER_VAR, Scope, climb, is_dead, protected_pids
from ._record import RunRecord, stop_columns
from ._results import StopResult
from ._spec import DEFAULT_GRACE

log = logging.getLogger("runstop_nb")
RUN_ID_VAR = "RUNSTOP_NB_RUN_ID"


@dataclass(frozen=True)
class Tree:
    """This user's live processes that carry one run's cookie."""

    cookie: str
    pids: tuple[int, ...]
    run_id: str | None  # from the agent's RUNSTOP_NB_RUN_ID (the guard lacks it)
    owner: tuple[int, float] | None  # (kernel pid, create time), None if unmarked
    owner_alive: bool
    guard_busy: bool = False  # its guard is alive and running: it is ending the tree itself
    record: RunRecord | None = field(default=None, compare=False)  # from this runs home's history

    @property
    def orphaned(self) -> bool:
        return self.owner is not None and not self.owner_alive

    @property
    def label(self) -> str:
        name = self.record.name if self.record else "orphan"
        return f"{name} ({self.run_id or self.cookie[:10]})"


def owner_alive(pid: int, ctime: float) -> bool:
    """True if the process ``pid`` started at ``ctime`` still runs (a zombie counts as dead)."""
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - ctime) <= CTIME_SLACK and not is_dead(proc)
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # cannot tell: never call a kernel dead on a guess


def _markers(env: bytes) -> dict[str, str]:
    out = {}
    for item in env.split(b"\0"):
        if item.startswith(b"RUNSTOP_NB_"):
            key, _, value = item.decode("utf-8", "replace").partition("=")
            out[key] = value
    return out


def _state(pid: int) -> str:
    """The one-letter process state from /proc/PID/stat (R, S, T, Z, ...)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    return stat[stat.rfind(b")") + 2 :][:1].decode()


def _is_guard(pid: int) -> bool:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        args = f.read().split(b"\0")
    return len(args) > 1 and args[1].endswith(b"_guard.py")


def scan() -> list[Tree]:
    """Every run tree of this user on this machine, found in one pass over /proc.

    Reads raw ``/proc`` (FACTS.md: ~1 ms at 90 processes). Never lists the caller or its
    ancestors. Returns [] where there is no ``/proc``.
    """
    uid = os.getuid() if hasattr(os, "getuid") else -1
    protect = protected_pids()
    found: dict[str, list[tuple[int, dict[str, str], str]]] = {}  # cookie -> (pid, markers, role)
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit() or int(name) in protect:
            continue
        pid = int(name)
        try:
            if os.stat(f"/proc/{name}").st_uid != uid:
                continue
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read()
            if COOKIE_VAR.encode() + b"=" not in env:
                continue
            state = _state(pid)
            role = "agent" if not _is_guard(pid) else "guard" if state != "T" else "stopped guard"
        except OSError:
            continue
        marks = _markers(env)
        if state not in ("Z", "X") and marks.get(COOKIE_VAR):
            found.setdefault(marks[COOKIE_VAR], []).append((pid, marks, role))
    owners: dict[tuple[int, float], bool] = {}
    out = []
    for cookie, procs in found.items():
        # Only agents are given the run id; a guard inherits the kernel's (set if the kernel is itself a run).
        run_id = next((m[RUN_ID_VAR] for _, m, r in procs if r == "agent" and m.get(RUN_ID_VAR)), None)
        owner = next((o for _, m, _ in procs if (o := _parse_owner(m.get(OWNER_VAR, ""))) is not None), None)
        if owner is not None and owner not in owners:
            owners[owner] = owner_alive(*owner)
        alive = owners[owner] if owner is not None else True
        busy = any(r == "guard" for _, _, r in procs)  # a running guard is stopping the tree itself
        out.append(Tree(cookie, tuple(p for p, _, _ in procs), run_id, owner, alive, busy))
    return out


def _parse_owner(text: str) -> tuple[int, float] | None:
    pid, _, ctime = text.partition(":")
    try:
        return int(pid), float(ctime)
    except ValueError:
        return None


def orphans(store: Store | None = None) -> list[Tree]:
    """Trees whose kernel is dead, each with its history record when ``store`` has it."""
    return with_records([t for t in scan() if t.orphaned], store)


def with_records(trees: list[Tree], store: Store | None) -> list[Tree]:
    """The trees, each with its record from ``store`` (and the run id it gives) when it has one."""
    if not trees or store is None or not store.exists():
        return trees
    marks = ", ".join("?" * len(trees))
    known = {r.cookie: r for r in store.select(f"cookie IN ({marks})", [t.cookie for t in trees])}
    return [Tree(t.cookie, t.pids, t.run_id or (known[t.cookie].id if t.cookie in known else None), t.owner,
                 t.owner_alive, t.guard_busy, known.get(t.cookie)) for t in trees]


def stop_tree(cookie: str, *, run_id: str, name: str, grace: float, root: int | None = None,
              started_at: float = 0.0, prior: str = "orphaned", store: Store | None = None,
              why: str = "its kernel had died; its leftover processes were stopped") -> StopResult:
    """Stop every process carrying ``cookie`` with the stop ladder; record it in ``store``."""
    t0 = time.monotonic()
    scope = Scope(cookie=cookie, started_at=started_at, pgid=root, guard=None, protect=protected_pids())
    try:
        outcome = climb(scope, grace)
    except Exception as e:
        return StopResult(run_id, name, False, "error", prior, prior, elapsed_s=time.monotonic() - t0,
                          error=f"{type(e).__name__}: {e}")
    stopped = not outcome.survivors
    result = StopResult(
        run_id=run_id, name=name, stopped=stopped, reason="stopped" if stopped else "unkillable",
        prior_status=prior, status="cancelled" if stopped else "stopping", escalated=outcome.escalated,
        unkillable=outcome.survivors, signalled=outcome.signalled, swept=outcome.swept,
        elapsed_s=time.monotonic() - t0,
    )
    if store is not None and stopped:
        try:
            store.update_if_live(run_id, {"status": "cancelled", "ended_at": time.time(), "error": why,
                                          **stop_columns(result)})
        except Exception as e:
            log.warning("runstop_nb: stopped run %s but could not record it in the history (%s)", run_id, e)
    return result


def _reap(trees: list[Tree], grace: float | None, store: Store | None) -> list[StopResult]:
    def one(t: Tree) -> StopResult:
        rec = t.record
        g = grace if grace is not None else min(rec.grace if rec else DEFAULT_GRACE, DEFAULT_GRACE)
        return stop_tree(
            t.cookie, run_id=t.run_id or t.cookie[:10], name=rec.name if rec else "orphan", grace=g,
            root=rec.pid if rec else None, started_at=rec.started_at.timestamp() if rec else 0.0,
            store=store if rec else None,
        )

    if not trees:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(trees)), thread_name_prefix="runstop-reap") as pool:
        return list(pool.map(one, trees))


def matches(tree: Tree, wanted: list[str]) -> bool:
    return any(
        w == tree.cookie or (tree.run_id is not None and (w == tree.run_id or (len(w) >= 4 and tree.run_id.startswith(w))))
        for w in wanted
    )


def reap_orphans(ids: Iterable[str] | None = None, *, grace: float | None = None) -> list[StopResult]:
    """Stop every agent process tree of this user whose kernel has died, verified.

    ``ids`` limits it to those runs (run ids, unique id prefixes, or cookies). ``grace``
    is the SIGTERM-to-SIGKILL wait (default: the run's own, at most 3 s). Returns one
    StopResult per tree (``prior_status="orphaned"``); runs recorded in this runs home's
    history are marked ``cancelled`` there.
    """
    path = db_path()
    store = store_for(path) if path.exists() else None
    trees = orphans(store)
    if ids is not None:
        wanted = [str(i) for i in ids]
        trees = [t for t in trees if matches(t, wanted)]
    return _reap(trees, grace, store)


def load_report() -> str | None:
    """What ``%load_ext runstop_nb`` says about orphans, after starting the default action.

    Stops (in the background) the orphans recorded in this runs home's history and
    reports the rest. Returns one line, or None when there is nothing to say. Fast (one
    /proc pass; the history is opened only if orphans exist) and never raises.
    """
    try:
        return _report()
    except Exception as e:
        log.debug("runstop_nb: the orphan check failed: %s", e)
        return None


def _report() -> str | None:
    trees = [t for t in scan() if t.orphaned and not t.guard_busy]
    if not trees:
        return None
    path = db_path()
    store = store_for(path) if path.exists() else None  # never create a runs home on load
    trees = with_records(trees, store)
    ours = [t for t in trees if t.record is not None]
    others = [t for t in trees if t.record is None]
    parts = []
    if ours:
        threading.Thread(target=_reap, args=(ours, None, store), name="runstop-janitor", daemon=True).start()
        names = ", ".join(t.label for t in ours[:5]) + (", …" if len(ours) > 5 else "")
        parts.append(f"stopping {_n(len(ours), 'orphaned run')} of this project whose kernel died: {names}")
    if others:
        parts.append(
            f"{_n(len(others), 'orphaned agent tree')} from elsewhere (kernel dead) still running; "
            "runstop_nb.reap_orphans() or `runstop reap` stops them"
        )
    return "runstop_nb: " + "; ".join(parts)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"

