"""P6 and P7 (with P5's many-agents part): the kernel under many runs.

P6 alternates phases in one kernel: idle, the same floods Popen'd raw into files (no
runstop_nb, no widgets: CPU contention alone), and the floods as runstop_nb runs shown
in a grid. A trivial cell's round trip is sampled throughout each phase.

P7 starts sleeping agents from one cell with ``%%agent_run`` (each shown in the grid, as
a notebook user would), then samples the kernel's CPU in 1 s windows and the memory each
run adds: its guard process, plus the kernel's growth divided by the number of runs.
The same is repeated with runs started through the API and never displayed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psutil
from _capture import SETTLE, load
from _kernel import Kernel, Traffic
from _plan import Plan

SLEEP_SETTLE = 6.0  # seconds from starting the sleepers to sampling their kernel (P7)


def _round_trips(k: Kernel, seconds: float) -> list[float]:
    out = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        content, rtt = k.execute("1 + 1")
        if content["status"] != "ok":
            raise RuntimeError(f"the trivial cell failed: {content}")
        out.append(rtt * 1e3)
        time.sleep(0.01)
    return out


def responsiveness(k: Kernel, plan: Plan, scratch: Path) -> dict[str, Any]:
    load(k)
    k.call(f"B.capture('widget', 1000, {str(scratch)!r})")  # warm-up: imports, first widget
    k.iopub.quiet(SETTLE)
    idle: list[float] = []
    raw: list[float] = []
    flooded: list[float] = []
    traffic: list[Traffic] = []
    raw_mb_s: list[float] = []
    rs_mb_s: list[float] = []
    stop_s: list[float] = []
    for _ in range(plan.flood_cycles):
        idle += _round_trips(k, plan.flood_phase)
        k.call(f"B.start_raw_floods({plan.floods}, {str(scratch)!r})")
        t0 = time.perf_counter()
        raw += _round_trips(k, plan.flood_phase)
        written = k.call(f"W = B.stop_raw_floods({str(scratch)!r})", want="W")
        raw_mb_s.append(written / 1e6 / (time.perf_counter() - t0))
        k.call(f"get_ipython().run_cell_magic('agent_run', '--cols 4', B.flood_cell({plan.floods}))")
        t0 = time.perf_counter()
        flooded += _round_trips(k, plan.flood_phase)
        t1 = time.perf_counter()
        traffic.append(Traffic.of(k.iopub.since(t0, t1), t1 - t0))
        stopped = k.call("S = B.stop_all_and_clean()", want="S")
        rs_mb_s.append(stopped["bytes"] / 1e6 / (time.perf_counter() - t0))
        stop_s.append(stopped["s"])
        k.iopub.quiet(SETTLE)
    idle += _round_trips(k, plan.flood_phase)
    return {"idle_ms": idle, "raw_ms": raw, "flooded_ms": flooded, "traffic": traffic,
            "raw_mb_s": raw_mb_s, "runstop_mb_s": rs_mb_s, "stop_s": stop_s}


def _cpu_windows(k: Kernel, seconds: int) -> list[float]:
    """Kernel CPU %, one figure per 1 s window (100 = one core)."""
    out = []
    for _ in range(seconds):
        c0, t0 = k.cpu(), time.perf_counter()
        time.sleep(1.0)
        out.append(100 * (k.cpu() - c0) / (time.perf_counter() - t0))
    return out


def _phase(k: Kernel, plan: Plan, display: bool) -> dict[str, Any]:
    rss0 = k.rss()
    started = k.call(f"R = B.start_sleepers({plan.agents}, {display})", want="R")
    if started["running"] != plan.agents:
        raise RuntimeError(f"only {started['running']} of {plan.agents} agents were running")
    # The steady state of sleeping agents: after each new run's 3 s of fast polling for its
    # first line (FIRST_OUTPUT_WINDOW) and the 5 passes in which its tree stats settle.
    # Sampling from 1 s after the start (as the first rounds did) measured start-up too.
    time.sleep(SLEEP_SETTLE)
    t0 = time.perf_counter()
    cpu = _cpu_windows(k, plan.sleep_window)
    traffic = Traffic.of(k.iopub.since(t0), time.perf_counter() - t0)
    kernel_growth = (k.rss() - rss0) / 1e6
    guards = []
    for pid in started["guards"]:
        try:
            mem = psutil.Process(pid).memory_full_info()
        except psutil.Error:
            continue
        guards.append({"rss": mem.rss / 1e6, "uss": mem.uss / 1e6, "pss": mem.pss / 1e6})
    stopped = k.call("S = B.stop_all_and_clean()", want="S")
    k.iopub.quiet(SETTLE)
    return {"start_s": started["s"], "running": started["running"], "cpu": cpu,
            "traffic": traffic, "kernel_growth_mb": kernel_growth, "guards": guards,
            "stop_s": stopped["s"], "stopped": stopped["stopped"]}


def sleepers(k: Kernel, plan: Plan, scratch: Path) -> dict[str, Any]:
    load(k)
    k.call(f"B.capture('widget', 1000, {str(scratch)!r})")  # warm-up: imports, first widget
    k.call("B.stop_all_and_clean()")
    k.iopub.quiet(SETTLE)
    idle = _cpu_windows(k, plan.idle_window)
    ui = _phase(k, plan, display=True)
    api = _phase(k, plan, display=False)
    return {"idle_cpu": idle, "ui": ui, "api": api}
