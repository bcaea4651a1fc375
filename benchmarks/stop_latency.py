"""Stop latency and per-run memory, next to the raw-signal baseline on identical trees.

    .venv/bin/python benchmarks/stop_latency.py [--samples 20]

Two trees, each of 11 processes (bash plus 10 sleeps):

* cooperative: every member dies on SIGTERM;
* stubborn: one sleep ignores SIGTERM (``trap '' TERM`` survives exec), at grace 0.2 s.

For each, ``run.stop()`` is timed against the raw baseline on a tree started with plain
``subprocess`` (``start_new_session=True``): ``killpg(SIGTERM)`` (then 0.2 s and
``killpg(SIGKILL)`` for the stubborn tree), polling until every member is dead or a
zombie. Samples alternate between the two so machine load hits both alike; medians are
printed. ``run.stop()`` does more than the baseline: it also sweeps ``/proc`` for
escapees, reads the logs a last time and releases the guard, and the baseline would
miss any ``setsid`` escapee. Memory: RSS, USS and PSS of each run's guard process.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import runstop_nb

SLEEPS = 10
COOPERATIVE = f"for i in $(seq {SLEEPS}); do sleep 3600 & done; wait"
STUBBORN = f"(trap '' TERM; exec sleep 3600) & for i in $(seq {SLEEPS - 1}); do sleep 3600 & done; wait"
GRACE = 0.2
TREE = SLEEPS + 1


def _dead(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _names(procs: list[psutil.Process]) -> list[str]:
    """Sorted names; a member still between fork and exec shows as bash."""
    try:
        return sorted(p.name() for p in procs)
    except psutil.Error:
        return []


def _until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("tree did not reach the expected state")
        time.sleep(0.002)


def raw_sample(script: str, escalate: bool) -> float:
    """killpg(TERM) [, GRACE, killpg(KILL)], then poll until all 11 are dead."""
    root = subprocess.Popen(["bash", "-c", script], start_new_session=True)
    parent = psutil.Process(root.pid)
    _until(lambda: _names(parent.children(recursive=True)) == ["sleep"] * SLEEPS)
    procs = [parent, *parent.children(recursive=True)]
    try:
        t0 = time.perf_counter()
        os.killpg(root.pid, signal.SIGTERM)
        if escalate:
            time.sleep(GRACE)
            os.killpg(root.pid, signal.SIGKILL)
        while not all(_dead(p) for p in procs):
            time.sleep(0.0005)
        took = time.perf_counter() - t0
    finally:
        for p in procs:
            try:
                p.kill()
            except psutil.Error:
                pass
        root.wait()
    return took


def runstop_sample(script: str, grace: float) -> tuple[float, float, object]:
    """run.stop() on the same tree; returns (wall time of stop(), its elapsed_s, guard)."""
    run = runstop_nb.start(["bash", "-c", script], grace=grace)
    guard = run._agent.guard  # type: ignore[union-attr]
    _until(lambda: _names(run.members()) == ["bash"] + ["sleep"] * SLEEPS)
    t0 = time.perf_counter()
    result = run.stop()
    took = time.perf_counter() - t0
    assert result.stopped, result
    return took, result.elapsed_s, guard


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:8.1f} ms (min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f})"


def latency(samples: int) -> None:
    for label, script, grace, escalate in (
        ("cooperative tree, 11 processes", COOPERATIVE, 3.0, False),
        (f"one TERM-ignorer, grace {GRACE} s", STUBBORN, GRACE, True),
    ):
        raw: list[float] = []
        wall: list[float] = []
        ladder: list[float] = []
        for _ in range(samples):
            raw.append(raw_sample(script, escalate))
            w, e, _ = runstop_sample(script, grace)
            wall.append(w)
            ladder.append(e)
        print(f"\n{label}: medians of {samples}")
        print(f"  raw killpg baseline        {ms(raw)}")
        print(f"  run.stop() wall            {ms(wall)}")
        print(f"  run.stop() elapsed_s       {ms(ladder)}  (the ladder and end of run, as reported)")
        print(f"  overhead vs raw (median)   {(statistics.median(wall) - statistics.median(raw)) * 1000:8.1f} ms")


def memory(runs: int = 20) -> None:
    """Each run's guard: RSS, USS (its own pages) and PSS, while its agent idles; and
    what the runs add to this (the kernel's) process."""
    me = psutil.Process()
    warm = runstop_nb.start(["true"])  # imports and the supervisor thread are paid once
    warm.wait(20)
    before = me.memory_full_info()
    started = [runstop_nb.start(["sleep", "3600"]) for _ in range(runs)]
    try:
        time.sleep(1.0)  # let every guard settle in its select loop
        infos = [psutil.Process(r._agent.guard.pid).memory_full_info() for r in started]  # type: ignore[union-attr]
        after = me.memory_full_info()
        print(f"\nguard process per run (median of {runs} idle runs):")
        for field in ("rss", "uss", "pss"):
            print(f"  {field.upper():4} {statistics.median(getattr(i, field) for i in infos) / 2**20:6.1f} MiB")
        print(f"in the calling process, per live run: USS +{(after.uss - before.uss) / runs / 2**10:.0f} KiB, "
              f"RSS +{(after.rss - before.rss) / runs / 2**10:.0f} KiB; "
              f"open fds {me.num_fds()} for {runs} runs")
    finally:
        runstop_nb.stop_all(grace=0.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as home:
        os.environ["RUNSTOP_NB_HOME"] = home
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, "
              f"load {os.getloadavg()[0]:.2f}, runstop_nb {runstop_nb.__version__}")
        latency(args.samples)
        memory()
        left = [r for r in runstop_nb.runs() if not r.done]
        assert not left, f"runs left alive: {left}"


if __name__ == "__main__":
    main()
