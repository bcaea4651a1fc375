"""P10: a history of many runs. Run as its own process; prints one JSON document.

    python benchmarks/_records.py --rows 100000 --scratch DIR [--samples 20]

Two runs homes in ``DIR``: ``big`` gets ``--rows`` recorded runs, ``small`` gets 50 (the
baseline: the same queries over a history that fits one page). Every row is the history
row of a real run (``_recorder.run_row`` of a ``true`` started here), varied in id, name,
cookie, status and times, and written with the history's own ``Store.upsert`` (the API
has no bulk path, so one upsert per row, as a kernel writes them). Then, in each home:

* ``history(limit=50)``: the first call (it opens the database) and warm calls;
* ``load(id)`` of random ids;
* ``runstop ls`` as a whole process (the console script), wall time;
* the database's size on disk (``history.sqlite`` plus its WAL);
* start latency: ``start(["true"])`` until it returns (it waits for its row to land),
  alternating between ``big`` and a third home, ``empty``, that starts with no history.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

SMALL = 50
STATUSES = ("completed", "completed", "completed", "failed", "cancelled", "timed_out")


def _home(path: Path) -> None:
    os.environ["RUNSTOP_NB_HOME"] = str(path)


def fill(home: Path, rows: int) -> dict[str, Any]:
    """Record ``rows`` runs in ``home``: one real run, then its row varied ``rows - 1`` times."""
    import runstop_nb
    from runstop_nb import _history, _recorder
    from runstop_nb import _home as homes

    _home(home)
    run = runstop_nb.start(["true"], name="template")
    run.wait(30)
    _recorder.flush(5)
    template = _recorder.run_row(run)
    store = _history.store_for(homes.db_path())
    rng = random.Random(rows)
    now = time.time()
    ids = [run.id]
    t0 = time.perf_counter()
    for i in range(rows - 1):
        rid = uuid.uuid4().hex[:10]
        started = now - (rows - i) * 30.0  # one run every 30 s, the newest just now
        status = STATUSES[i % len(STATUSES)]
        store.upsert({**template, "id": rid, "name": f"agent-{i % 500}", "status": status,
                      "returncode": 0 if status == "completed" else 1, "started_at": started,
                      "ended_at": started + rng.uniform(1, 600), "cookie": uuid.uuid4().hex,
                      "pid": 10_000 + i % 50_000, "log_dir": str(home / "runs" / rid),
                      "lines": rng.randrange(10_000), "bytes": rng.randrange(1_000_000), "updated_at": now})
        ids.append(rid)
    return {"ids": ids, "fill_s": time.perf_counter() - t0}


def _ms(fn: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def queries(home: Path, ids: list[str], samples: int) -> dict[str, Any]:
    import runstop_nb

    _home(home)
    t0 = time.perf_counter()
    first = runstop_nb.history(limit=50)
    cold = (time.perf_counter() - t0) * 1e3
    assert len(first) == 50, len(first)
    warm = _ms(lambda: runstop_nb.history(limit=50), samples)
    rng = random.Random(1)
    picks = [rng.choice(ids) for _ in range(samples)]
    loads = []
    for rid in picks:
        t0 = time.perf_counter()
        assert runstop_nb.load(rid).id == rid
        loads.append((time.perf_counter() - t0) * 1e3)
    cli = shutil.which("runstop", path=str(Path(sys.executable).parent)) or "runstop"
    ls = []
    for _ in range(max(3, samples // 4)):
        t0 = time.perf_counter()
        proc = subprocess.run([cli, "ls", "--home", str(home)], capture_output=True, text=True, timeout=60)
        ls.append((time.perf_counter() - t0) * 1e3)
        if proc.returncode != 0:
            raise RuntimeError(f"runstop ls failed: {proc.stderr.strip()}")
    size = sum(f.stat().st_size for f in home.glob("history.sqlite*") if f.is_file())
    return {"history_cold_ms": cold, "history_ms": warm, "load_ms": loads, "ls_ms": ls,
            "ls_lines": len(proc.stdout.splitlines()), "db_bytes": size}


def start_latency(empty: Path, big: Path, pairs: int) -> dict[str, list[float]]:
    """start(["true"]) until it returns, alternating homes (a warm-up start in each first)."""
    import runstop_nb

    out: dict[str, list[float]] = {"empty": [], "big": []}
    for i in range(pairs + 1):
        order = (("empty", empty), ("big", big)) if i % 2 == 0 else (("big", big), ("empty", empty))
        for which, home in order:
            _home(home)
            t0 = time.perf_counter()
            run = runstop_nb.start(["true"], name=f"latency-{uuid.uuid4().hex[:6]}")
            took = (time.perf_counter() - t0) * 1e3
            run.wait(30)
            if i:  # the first pair is the warm-up
                out[which].append(took)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--scratch", type=Path, required=True)
    args = ap.parse_args()
    small, big = args.scratch / "small", args.scratch / "big"
    filled = {"small": fill(small, SMALL), "big": fill(big, args.rows)}
    doc: dict[str, Any] = {"rows": args.rows, "small_rows": SMALL, "fill_s": filled["big"]["fill_s"]}
    for which, home in (("big", big), ("small", small)):  # the first pays one-off imports: the big one
        doc[which] = queries(home, filled[which]["ids"], args.samples)
    doc["start_ms"] = start_latency(args.scratch / "empty", big, args.samples)
    import runstop_nb

    left = [r for r in runstop_nb.runs() if not r.done]
    doc["left_alive"] = len(left)
    doc["median"] = {k: statistics.median(v) for k, v in doc["start_ms"].items()}
    json.dump(doc, sys.stdout)


if __name__ == "__main__":
    main()
