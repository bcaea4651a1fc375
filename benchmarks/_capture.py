"""P1, P2 and P8: capturing floods of output, and what showing them costs the kernel.

P1 times four ways of capturing the same flood, in rotating order each round so they
share the machine's noise: ``widget`` (``%agent_run --wait``, displayed, as in a notebook),
``api`` (``runstop_nb.start`` + ``wait``), ``pipe`` (the issue's baseline: Popen, its stdout
pipe copied into a file) and ``file`` (Popen writing straight into a file, the floor).
The widget rounds are also P2's samples: their IOPub traffic, message by message.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _kernel import Kernel, Traffic
from _plan import Plan

MODES = ("widget", "pipe", "api", "file")
SETTLE = 0.4  # seconds without traffic that mark a displayed run's last frame as sent


@contextlib.contextmanager
def rss_samples(k: Kernel, first: int) -> Iterator[list[int]]:
    """The kernel's RSS every 50 ms while the block runs (``first`` leads the list): its peak."""
    samples = [first]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(k.rss())
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield samples
    finally:
        done.set()
        sampler.join()

def load(k: Kernel) -> None:
    k.call("get_ipython().run_line_magic('load_ext', 'runstop_nb')")


def capture(k: Kernel, plan: Plan, scratch: Path) -> dict[str, Any]:
    """P1 samples (seconds per mode) and P2 samples (traffic of each widget round)."""
    load(k)
    # Warm-up: imports and the first widget's models are one-off costs, not capture.
    k.call(f"B.capture('widget', 1000, {str(scratch)!r})")
    k.iopub.quiet(SETTLE)
    seconds: dict[str, list[float]] = {m: [] for m in MODES}
    cpu: dict[str, list[float]] = {m: [] for m in MODES}
    cpu_kernel: dict[str, list[float]] = {m: [] for m in MODES}
    traffic: list[Traffic] = []
    verified = True
    for i in range(plan.capture_rounds):
        for mode in MODES[i % len(MODES):] + MODES[: i % len(MODES)]:
            t0 = time.perf_counter()
            r = k.call(f"R = B.capture({mode!r}, {plan.capture_lines}, {str(scratch)!r})", want="R")
            verified = verified and bool(r["ok"])
            seconds[mode].append(r["s"])
            cpu[mode].append(r["cpu_kernel"] + r["cpu_children"])
            cpu_kernel[mode].append(r["cpu_kernel"])
            if mode == "widget":
                k.iopub.quiet(SETTLE)
                t1 = time.perf_counter()
                traffic.append(Traffic.of(k.iopub.since(t0, t1), r["s"]))
    return {"seconds": seconds, "cpu": cpu, "cpu_kernel": cpu_kernel, "traffic": traffic,
            "verified": verified}


def naive(k: Kernel, plan: Plan) -> dict[str, Any]:
    """P2 baseline: Output.append_stdout once per line for the first ``naive_lines`` lines."""
    t0 = time.perf_counter()
    r = k.call(f"R = B.naive_appends({plan.naive_lines})", want="R", timeout=600)
    k.iopub.quiet(SETTLE)
    return {"traffic": Traffic.of(k.iopub.since(t0, time.perf_counter()), r["s"]), "kernel_s": r["s"]}


def big_output(k: Kernel, plan: Plan, scratch: Path) -> dict[str, Any]:
    """P8: kernel RSS before and after displayed runs of ~1 GB each, and the peak between."""
    load(k)
    k.call(f"B.capture('widget', {min(100_000, plan.big_lines)}, {str(scratch)!r})")  # warm-up
    k.iopub.quiet(SETTLE)
    before = k.rss()
    growth: list[float] = []
    peaks: list[float] = []
    traffic: list[Traffic] = []
    verified = True
    for _ in range(plan.big_runs):
        t0 = time.perf_counter()
        with rss_samples(k, before) as peak:
            r = k.call(f"R = B.capture('widget', {plan.big_lines}, {str(scratch)!r})", want="R", timeout=600)
        k.iopub.quiet(SETTLE)
        traffic.append(Traffic.of(k.iopub.since(t0, time.perf_counter()), r["s"]))
        verified = verified and bool(r["ok"])
        growth.append((k.rss() - before) / 1e6)
        peaks.append((max(peak) - before) / 1e6)
    return {"before_mb": before / 1e6, "growth_mb": growth, "peak_mb": peaks, "traffic": traffic,
            "verified": verified, "bytes": plan.big_lines * 60}
