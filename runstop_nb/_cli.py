"""``runstop``: list, inspect, follow, stop and reap runs from a terminal.

It reads the same history as the notebook: ``$RUNSTOP_NB_HOME``, else ``./.runstop``,
else ``--home DIR``. It never creates a runs home.

``runstop stop`` on a run whose kernel is alive does not kill behind the kernel's back:
it marks the run's row, and the kernel (its history thread checks every 0.5 s, even
during a blocking cell) stops the run exactly as its Stop button would, so the run ends
``cancelled`` with a full StopResult. If the kernel does not act in time (it is hung,
or its history thread is gone), the CLI stops the tree itself by its cookie and says
so. A run whose kernel is dead is stopped directly, by its cookie.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from ._history import store_for
from ._home import HOME_VAR, db_path
from ._janitor import matches, orphans, owner_alive, reap_orphans, stop_tree
from ._logs import STREAMS, LogFiles, read_range
from ._pastrun import command_text, elapsed, history, load
from ._proc.cgroup import Group
from ._record import RunRecord
from ._recorder import HOST, POLL
from ._status import LIVE, TERMINAL, UNSETTLED
from ._units import clock, size
from .errors import HistoryError, RunNotFoundError

FOLLOW_EVERY = 0.2  # seconds between reads of new output in `logs -f`
KERNEL_ACTS_WITHIN = 5.0  # seconds (plus the grace) a live kernel gets to stop its run


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="runstop", description="Inspect and stop runstop_nb runs.")
    ap.add_argument("--home", help="the runs home (default: $RUNSTOP_NB_HOME, else ./.runstop)")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("ls", help="list runs, newest first")
    p.add_argument("-n", "--limit", type=int, default=50, help="at most this many (0: all)")
    p.add_argument("--name", help="only runs with this name")
    p.add_argument("--status", action="append", help="only runs in this status (repeatable)")
    p.add_argument("--json", action="store_true", help="one JSON object per run, as a list")
    p = sub.add_parser("show", help="a run's metadata and the tail of its output")
    p.add_argument("id", help="run id, unique id prefix, or name (the latest run of it)")
    p.add_argument("-n", "--lines", type=int, default=20, help="tail lines to show")
    p = sub.add_parser("logs", help="a run's whole output")
    p.add_argument("id")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new output until the run ends")
    p.add_argument("--stream", choices=("both", *STREAMS), default="both")
    p = sub.add_parser("stop", help="stop runs, whole process tree, verified")
    p.add_argument("ids", nargs="*", metavar="ID")
    p.add_argument("--all", action="store_true", help="every run of this runs home that is not over")
    p.add_argument("--grace", type=float, help="seconds between SIGTERM and SIGKILL (default: the run's)")
    p = sub.add_parser("reap", help="stop agent processes whose kernel died (all of this user's, or these)")
    p.add_argument("ids", nargs="*", metavar="ID")
    p.add_argument("--dry-run", action="store_true", help="only list them")
    p.add_argument("--grace", type=float)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.home:
        os.environ[HOME_VAR] = str(Path(args.home).absolute())
    store_for(db_path(), fallback=False)  # the CLI reports an unusable history; it never works in memory
    command = {"ls": _ls, "show": _show, "logs": _logs, "stop": _stop, "reap": _reap}[args.command]
    try:
        return command(args)
    except (RunNotFoundError, HistoryError, ValueError) as e:
        print(f"runstop: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `runstop logs ID | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _ls(args: argparse.Namespace) -> int:
    records = history(limit=args.limit or None, name=args.name, status=args.status)
    if args.json:
        rows = [{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in dataclasses.asdict(r).items()}
                for r in records]
        print(json.dumps(rows, indent=1))
    elif not records:
        print(f"no runs recorded in {db_path().parent}", file=sys.stderr)
    else:
        print(repr(records))
    return 0


def _show(args: argparse.Namespace) -> int:
    run = load(args.id)
    rec = run.record
    status = rec.status + (f" (exit {rec.returncode})" if rec.returncode is not None else "")
    if rec.status != rec.recorded_status:
        status += f"; recorded as {rec.recorded_status}, but its kernel is gone"
    kernel = "alive" if rec.host != HOST or owner_alive(rec.kernel_pid, rec.kernel_ctime) else "dead"
    fields = [
        ("id", rec.id), ("name", rec.name), ("status", status), ("command", command_text(rec)),
        ("cwd", rec.cwd), ("started", rec.started_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")),
        ("ended", rec.ended_at.astimezone().strftime("%Y-%m-%d %H:%M:%S") if rec.ended_at else "-"),
        ("elapsed", clock(elapsed(rec))), ("pid", str(rec.pid)),
        ("kernel", f"pid {rec.kernel_pid} on {rec.host} ({kernel})"),
        ("output", f"{run.lines} lines, {size(run.bytes)}"),
        ("env keys", (", ".join(rec.env_keys) + " (values are not recorded)") if rec.env_keys else "-"),
        ("logs", str(run.log_dir)),
    ]
    if run.last_stop is not None:
        fields.append(("last stop", str(run.last_stop)))
    if rec.error:
        fields.append(("error", rec.error))
    for key, value in fields:
        print(f"{key:<10}{value}")
    tail = run.tail(args.lines)
    print(f"\n--- last {args.lines} lines ---")
    sys.stdout.write(tail if tail.endswith("\n") or not tail else tail + "\n")
    return 0


def _logs(args: argparse.Namespace) -> int:
    rec = load(args.id).record
    files = LogFiles(Path(rec.log_dir))
    out = sys.stdout.buffer
    offsets = dict.fromkeys(STREAMS, 0)
    for stream, off, n in files.chunks():  # what exists, interleaved as it appeared
        if args.stream in ("both", stream):
            out.write(read_range(files.path(stream), off, n))
        offsets[stream] = off + n
    out.flush()
    if not args.follow:
        return 0
    streams = STREAMS if args.stream == "both" else (args.stream,)
    next_check = time.monotonic() + 1.0
    ended = rec.status not in UNSETTLED
    while True:
        for stream in streams:  # after the end, one last read catches the final bytes
            data = read_range(files.path(stream), offsets[stream], None)
            if data:
                out.write(data)
                offsets[stream] += len(data)
        out.flush()
        if ended:
            return 0
        time.sleep(FOLLOW_EVERY)
        if time.monotonic() >= next_check:
            next_check = time.monotonic() + 1.0
            ended = load(rec.id).status not in UNSETTLED


def _stop(args: argparse.Namespace) -> int:
    if args.all == bool(args.ids):
        print("runstop: give run ids, or --all", file=sys.stderr)
        return 2
    if args.all:
        records = list(history(limit=None, status=list(UNSETTLED)))
        if not records:
            print("no live runs recorded here")
            return 0
    else:
        records = [load(i).record for i in args.ids]
    with ThreadPoolExecutor(max_workers=min(16, len(records))) as pool:
        outcomes = list(pool.map(lambda r: _stop_one(r, args.grace), records))
    for _, line in outcomes:
        print(line)
    return 0 if all(ok for ok, _ in outcomes) else 1


def _stop_one(rec: RunRecord, grace: float | None) -> tuple[bool, str]:
    label = f"{rec.name} ({rec.id})"
    g = rec.grace if grace is None else grace
    if rec.status in TERMINAL:
        return True, f"{label}: already {rec.status}; nothing signalled"
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
        now = load(rec.id)
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


def _reap(args: argparse.Namespace) -> int:
    path = db_path()
    if args.dry_run:
        trees = orphans(store_for(path) if path.exists() else None)
        if args.ids:
            trees = [t for t in trees if matches(t, args.ids)]
        for t in trees:
            where = "recorded here" if t.record else "from elsewhere"
            owner = t.owner[0] if t.owner else "?"
            print(f"{t.label}: pids {', '.join(map(str, t.pids))}; kernel pid {owner} is dead; {where}")
        if not trees:
            print("no orphaned runstop_nb processes")
        return 0
    results = reap_orphans(args.ids or None, grace=args.grace)
    for r in results:
        print(r)
    if not results:
        print("no orphaned runstop_nb processes")
    return 0 if all(r.stopped for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
