"""The janitor: finds agent trees whose kernel is dead, and stops them.

Every agent carries ``RUNSTOP_NB_COOKIE`` (one uuid per run) and
``RUNSTOP_NB_OWNER=<kernel pid>:<kernel start>``; the warden and the guards carry the
owner and ``RUNSTOP_NB_ROLE=warden``. So one pass over ``/proc/*/environ`` groups this
user's runstop_nb processes by run and tells, by pid *and* start time (a recycled pid is
not the kernel), whether their kernel still lives. A tree normally never outlives its
kernel: its guard stops it, and the warden stops it if the guard cannot. It does when the
guard and the warden died with the kernel (an OOM kill of all of them, ``kill -9`` of
every Python process). Runs in a cgroup are also found by their group, which nothing
can leave: the kernel group ``runstop_nb-<pid>-<start>`` of a dead kernel.

What ``%load_ext runstop_nb`` does with them (``load_report``):

* trees whose cookie is recorded in **this** runs home's history are stopped, in the
  background, with the usual ladder. They are unambiguously this project's, nobody can
  control them any more (their kernel is gone), and their guard would have stopped them;
* trees from elsewhere (another project's runs home, or no history) are only reported,
  with the command that stops them: another project's folder is not ours to act on.
  ``runstop_nb.reap_orphans()`` and ``runstop reap`` stop them all;
* a tree whose kernel's warden or guard still runs is left alone: they are stopping it;
* empty cgroups of dead kernels are removed (the names are ours, nothing is in them).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import psutil

from ._history import Store, store_for
from ._home import db_path
from ._proc import cgroup, procfs
from ._proc.cgroup import Group
from ._proc.ladder import climb
from ._proc.pinned import Pinned
from ._proc.trees import ScanTree
from ._record import RunRecord, stop_columns
from ._results import StopResult, Survivor
from ._spec import DEFAULT_GRACE
from ._units import plural

log = logging.getLogger("runstop_nb")
ROLE_VAR = "RUNSTOP_NB_ROLE"
CTIME_SLACK = 2.0  # seconds: start times are rounded differently by different readers


@dataclass(frozen=True)
class Tree:
    """This user's live processes that carry one run's cookie."""

    cookie: str
    pids: tuple[int, ...]
    run_id: str | None  # from the agent's RUNSTOP_NB_RUN_ID
    owner: tuple[int, float] | None  # (kernel pid, start), None if unmarked
    owner_alive: bool
    guard_busy: bool = False  # its kernel's warden or a guard is alive and running: it is ending the tree
    record: RunRecord | None = field(default=None, compare=False)  # from this runs home's history
    group: str | None = None  # its run's cgroup, in a dead kernel's group: what nothing can leave

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
        return abs(proc.create_time() - ctime) <= CTIME_SLACK and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # cannot tell: never call a kernel dead on a guess


def parse_owner(text: str) -> tuple[int, float] | None:
    pid, _, ctime = text.partition(":")
    try:
        return int(pid), float(ctime)
    except ValueError:
        return None


def scan() -> list[Tree]:
    """Every run tree of this user on this machine, found in one pass over /proc.

    Never lists the caller or its ancestors. Returns [] where there is no ``/proc``.
    """
    me = os.getpid()
    protect = {me, *procfs.ancestors(me)}
    found: dict[str, list[tuple[int, dict[str, str]]]] = {}  # cookie -> agents
    helpers: dict[str, list[str]] = {}  # owner marker -> states of its warden and guards
    for pid, env in procfs.scan(procfs.OWNER_VAR.encode() + b"=", skip=protect):
        st = procfs.stat(pid)
        if st is None or st.dead:
            continue
        marks = procfs.markers(env)
        if marks.get(ROLE_VAR) == "warden":
            helpers.setdefault(marks.get(procfs.OWNER_VAR, ""), []).append(st.state)
        elif marks.get(procfs.COOKIE_VAR):
            found.setdefault(marks[procfs.COOKIE_VAR], []).append((pid, marks))
    owners: dict[tuple[int, float], bool] = {}
    out = []
    for cookie, procs in found.items():
        run_id = next((m[procfs.RUN_ID_VAR] for _, m in procs if m.get(procfs.RUN_ID_VAR)), None)
        marker = next((m[procfs.OWNER_VAR] for _, m in procs if m.get(procfs.OWNER_VAR)), "")
        owner = parse_owner(marker)
        if owner is not None and owner not in owners:
            owners[owner] = owner_alive(*owner)
        alive = owners[owner] if owner is not None else True
        busy = any(state not in ("T", "t") for state in helpers.get(marker, ()))
        out.append(Tree(cookie, tuple(p for p, _ in procs), run_id, owner, alive, busy))
    return out


def orphans(store: Store | None = None) -> list[Tree]:
    """Trees whose kernel is dead, each with its history record when ``store`` has it.

    Besides the trees found by cookie, a run whose cgroup (in a dead kernel's group) still
    holds processes is an orphan too, even when none of them carries the cookie any more.
    """
    trees = with_records([t for t in scan() if t.orphaned], store)
    groups = {name: kernel_group.child(name) for kernel_group, populated in dead_kernel_groups() if populated
              for name in _subgroups(kernel_group)}
    trees = [replace(t, group=groups[t.run_id].path) if t.run_id in groups else t for t in trees]
    covered = {t.run_id for t in trees}
    for name, group in groups.items():
        if name in covered or not group.populated():
            continue
        rec = _record(store, name)
        owner = (rec.kernel_pid, rec.kernel_ctime) if rec else None
        trees.append(Tree(rec.cookie if rec else f"cgroup:{group.path}", tuple(group.members()), name,
                          owner, False, False, rec, group.path))
    return trees


def _subgroups(group: Group) -> list[str]:
    try:
        return [e.name for e in os.scandir(group.path) if e.is_dir()]
    except OSError:
        return []


def _record(store: Store | None, run_id: str) -> RunRecord | None:
    if store is None or not store.exists():
        return None
    found = store.select("id = ?", [run_id], 1)
    return found[0] if found else None


def with_records(trees: list[Tree], store: Store | None) -> list[Tree]:
    """The trees, each with its record from ``store`` (and the run id it gives) when it has one."""
    if not trees or store is None or not store.exists():
        return trees
    marks = ", ".join("?" * len(trees))
    known = {r.cookie: r for r in store.select(f"cookie IN ({marks})", [t.cookie for t in trees])}
    return [replace(t, run_id=t.run_id or (known[t.cookie].id if t.cookie in known else None),
                    record=known.get(t.cookie)) for t in trees]


def run_group(tree: Tree) -> Group | None:
    """The run's cgroup, if it was contained in one and the group still exists."""
    path = tree.group or (tree.record.cgroup if tree.record is not None else None)
    if not path:
        return None
    group = Group(path)
    return group if group.exists() else None


def stop_tree(cookie: str, *, run_id: str, name: str, grace: float, root: int | None = None,
              started_at: float = 0.0, prior: str = "orphaned", store: Store | None = None,
              group: Group | None = None, cause: str = "janitor",
              why: str = "its kernel had died; its leftover processes were stopped") -> StopResult:
    """Stop every process carrying ``cookie`` (and in ``group``) with the ladder; record it in ``store``."""
    t0 = time.monotonic()
    me = os.getpid()
    pinned = Pinned.now(root) if root else None
    tree = ScanTree(cookie or None, started_at=started_at, root=pinned, group=group,
                    protect={me, *procfs.ancestors(me)})
    try:
        verdict = climb(tree, grace)
    except Exception as e:
        return StopResult(run_id, name, False, "error", prior, prior, elapsed_s=time.monotonic() - t0,
                          error=f"{type(e).__name__}: {e}", cause="janitor")
    result = StopResult(
        run_id=run_id, name=name, stopped=verdict.dead, reason="stopped" if verdict.dead else "unkillable",
        prior_status=prior, status="cancelled" if verdict.dead else "stopping", escalated=verdict.escalated,
        unkillable=tuple(Survivor(*s) for s in verdict.survivors), signalled=verdict.signalled,
        swept=verdict.swept, elapsed_s=time.monotonic() - t0, verified_by=verdict.verified_by,
        cause="cli" if cause == "cli" else "janitor",
    )
    if verdict.dead and group is not None:
        group.remove()
    if store is not None and verdict.dead:
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
            "" if t.cookie.startswith("cgroup:") else t.cookie, run_id=t.run_id or t.cookie[:10],
            name=rec.name if rec else "orphan", grace=g, root=rec.pid if rec else None,
            started_at=rec.started_at.timestamp() if rec else 0.0, store=store if rec else None, group=run_group(t),
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
    results = _reap(trees, grace, store)
    remove_empty_groups()
    return results


def remove_empty_groups() -> None:
    """Remove dead kernels' cgroups that hold nothing any more (the names are ours)."""
    for group, populated in dead_kernel_groups():
        if not populated:
            group.remove()


def dead_kernel_groups() -> list[tuple[Group, bool]]:
    """Kernel cgroups (ours by name) beside this kernel's whose kernel is dead: (group, populated)."""
    mount, own = cgroup.mount_point(), procfs.cgroup_of()
    if mount is None or own is None:
        return []
    out = []
    for group, pid, start in cgroup.kernel_groups(os.path.normpath(os.path.join(mount, own.lstrip("/")))):
        st = procfs.stat(pid)
        if st is None or st.start != start:
            out.append((group, group.populated()))
    return out


def load_report() -> str | None:
    """What ``%load_ext runstop_nb`` says about orphans, after starting the default action.

    Stops (in the background) the orphans recorded in this runs home's history and
    reports the rest; removes empty cgroups of dead kernels. Returns one line, or None
    when there is nothing to say. Fast (one /proc pass; the history is opened only if
    orphans exist) and never raises.
    """
    try:
        return _report()
    except Exception as e:
        log.debug("runstop_nb: the orphan check failed: %s", e)
        return None


def _report() -> str | None:
    remove_empty_groups()
    if not any(t.orphaned and not t.guard_busy for t in scan()) and not any(p for _, p in dead_kernel_groups()):
        return None
    path = db_path()
    store = store_for(path) if path.exists() else None  # never create a runs home on load
    trees = [t for t in orphans(store) if not t.guard_busy]
    if not trees:
        return None
    ours = [t for t in trees if t.record is not None]
    others = [t for t in trees if t.record is None]
    parts = []
    if ours:
        threading.Thread(target=_reap, args=(ours, None, store), name="runstop-janitor", daemon=True).start()
        names = ", ".join(t.label for t in ours[:5]) + (", …" if len(ours) > 5 else "")
        parts.append(f"stopping {plural(len(ours), 'orphaned run')} of this project whose kernel died: {names}")
    if others:
        parts.append(
            f"{plural(len(others), 'orphaned agent tree')} from elsewhere (kernel dead) still running; "
            "runstop_nb.reap_orphans() or `runstop reap` stops them"
        )
    return "runstop_nb: " + "; ".join(parts)

