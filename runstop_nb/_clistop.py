"""``runstop stop`` and ``runstop reap``: stopping runs of any kernel from a terminal.

A run whose kernel is alive is stopped *by its kernel* (the CLI marks the row, the
kernel's history thread acts within 0.5 s), so it ends with the same StopResult a Stop
click gives; only when the kernel does not act in time does the CLI stop the tree by its
cookie. A run whose kernel is dead is stopped by its cookie at once. A run whose kernel
is gone and whose processes belong to another user cannot be checked, and says so: the
CLI never claims "nothing to stop" for processes it cannot see.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ._history import store_for
from ._home import db_path
from ._janitor import matches, orphans, reap_orphans, stop_tree
from ._pastrun import PastRun, cannot_check, cannot_check_owner, history, live_ray_run, past
from ._proc.cgroup import Group
from ._record import RunRecord
from ._recorder import HOST, POLL
from ._status import LIVE, TERMINAL, UNSETTLED

KERNEL_ACTS_WITHIN = 5.0  # seconds (plus the grace) a live kernel gets to stop its run


def stop(args: argparse.Namespace, find_run: Callable[[str], PastRun]) -> int:
    """Stop the runs named in ``args.ids`` (found with ``find_run``), or ``--all`` unsettled runs."""
    notes: list[str] = []
    if args.all:
        records = list(history(limit=None, status=list(UNSETTLED)))
        if not records:
            print(f"no live runs recorded in {db_path().parent}")
            return 0
    else:
        records = []
        for wanted in args.ids:
            rec = find_run(wanted).record
            records.append(rec)
            if rec.name == wanted and rec.id != wanted:
                others = [r for r in history(limit=None, name=wanted, status=list(UNSETTLED)) if r.id != rec.id]
                notes += [f"note: {r.name} ({r.id}, kernel pid {r.kernel_pid}) is also {r.status} under that name "
                          f"and was left alone; `runstop stop {r.id}` stops it" for r in others]
    with ThreadPoolExecutor(max_workers=min(16, len(records))) as pool:
        outcomes = list(pool.map(lambda r: stop_one(r, args.grace), records))
    for _, line in outcomes:
        print(line)
    for note in notes:
        print(note)
    return 0 if all(ok for ok, _ in outcomes) else 1


def stop_one(rec: RunRecord, grace: float | None) -> tuple[bool, str]:
    """Stop one recorded run by the fitting route; (stopped or nothing to do, what happened)."""
    label = f"{rec.name} ({rec.id})"
    g = rec.grace if grace is None else grace
    if rec.status in TERMINAL:
        return True, f"{label}: already {rec.status}; nothing signalled"
    if cannot_check(rec):
        return False, (f"{label}: its kernel is gone and its processes belong to {cannot_check_owner(rec)}; "
                       "whether they still run cannot be checked from here; "
                       f"run `runstop stop {rec.id}` as that user or as root")
    if rec.status in ("orphaned", "lost") and (rec.options or {}).get("backend") == "ray":
        live = live_ray_run(rec)  # its kernel is gone: stop the job through its cluster, as a Stop would
        if live is not None:
            result = live.stop_for("cli", grace)
            return result.stopped, f"{result} (a Ray run whose kernel was gone; stopped through its cluster)"
    if rec.status == "lost":
        return True, f"{label}: lost (its kernel and its processes are gone); nothing to stop"
    store = store_for(db_path())
    group = Group(rec.cgroup) if rec.cgroup and os.path.isdir(rec.cgroup) else None
    if rec.status == "orphaned":
        result = stop_tree(rec.cookie, run_id=rec.id, name=rec.name, grace=g, root=rec.pid, group=group,
                           started_at=rec.started_at.timestamp(), store=store,
                           why="its kernel had died; `runstop stop` stopped its processes")
        return result.stopped, f"{result} (its kernel was dead; stopped by cookie)"
    if rec.host != HOST:
        return False, f"{label}: runs on host {rec.host}; run `runstop stop {rec.id}` there"
    store.request_stop(rec.id, grace)
    deadline = time.monotonic() + g + POLL + KERNEL_ACTS_WITHIN
    while time.monotonic() < deadline:
        now = past(rec.id)
        if now.status not in LIVE:
            if now.status in TERMINAL and now.last_stop is not None:
                return now.last_stop.stopped, f"{now.last_stop} (stopped by its kernel, pid {rec.kernel_pid})"
            if now.status in TERMINAL:
                return True, f"{label}: {now.status} before the stop was needed"
            break  # its kernel died meanwhile
        time.sleep(0.1)
    result = stop_tree(rec.cookie, run_id=rec.id, name=rec.name, grace=g, root=rec.pid, group=group,
                       started_at=rec.started_at.timestamp(), prior=rec.status, store=store, cause="cli",
                       why="`runstop stop` stopped it directly: its kernel did not act on the request")
    return result.stopped, f"{result} (its kernel, pid {rec.kernel_pid}, did not act in time; stopped by cookie)"


def _wanted(ids: list[str]) -> list[str]:
    """Reap arguments as run ids: a name stands for the ids of every run recorded under it."""
    path = db_path()
    if not ids or not path.exists():
        return ids
    out = list(ids)
    for wanted in ids:
        out += [r.id for r in history(limit=None, name=wanted)]
    return out


def reap(args: argparse.Namespace) -> int:
    path = db_path()
    wanted = _wanted(list(args.ids))
    if args.dry_run:
        trees = orphans(store_for(path) if path.exists() else None)
        if wanted:
            trees = [t for t in trees if matches(t, wanted)]
        for t in trees:
            where = "recorded here" if t.record else "from elsewhere"
            owner = t.owner[0] if t.owner else "?"
            print(f"{t.label}: pids {', '.join(map(str, t.pids))}; kernel pid {owner} is dead; {where}")
        if not trees:
            print("no orphaned runstop_nb processes" + (f" match {' '.join(args.ids)}" if args.ids else ""))
        return 0
    results = reap_orphans(wanted or None, grace=args.grace)
    for r in results:
        print(r)
    if not results:
        print("no orphaned runstop_nb processes" + (f" match {' '.join(args.ids)}" if args.ids else ""))
    return 0 if all(r.stopped for r in results) else 1
