"""``run.py --curves``: how four costs grow with load, each next to its raw baseline.

* stop: ``run.stop()`` of a cooperative tree of 10, 100 and 1,000 processes (bash and its
  sleeps, default containment), against ``killpg(TERM)`` + wait on the same tree, verified;
* agents: time until all are running, for 1, 10, 50 and 200 sleeps from one ``%%agent_run``
  cell (shown in a grid), against the same number Popen'd from one cell;
* cpu: the kernel's CPU with those agents shown (so 1 to 200 run widgets), against the
  kernel holding as many raw Popen'd sleeps, and the idle kernel;
* rss: the kernel's RSS growth after 0.1, 1 and 10 GB of output shown in a run widget
  (``%agent_run --wait``), against a kernel copying the same output from a Popen pipe to a
  file. Cumulative, one kernel per side; the peak during each run too.

Each curve is one PNG in docs/ (matplotlib, Agg backend).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from _capture import SETTLE, load, rss_samples
from _load import SLEEP_SETTLE, _cpu_windows

LINE = 60  # bytes per flood line


def _stop(k: Any, plan: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"sizes": list(plan.curve_trees), "runstop_ms": {}, "raw_ms": {}}
    for n in plan.curve_trees:
        rs: list[float] = []
        raw: list[float] = []
        for i in range(plan.curve_tree_pairs):
            for mode in ("runstop", "raw") if i % 2 == 0 else ("raw", "runstop"):
                r = k.call(f"R = B.stop({mode!r}, False, 3.0, 'auto', {n})", want="R", timeout=300)
                if not r["ok"]:
                    raise RuntimeError(f"a {n}-process tree was not verified dead ({mode})")
                (rs if mode == "runstop" else raw).append(r["s"] * 1e3)
                if mode == "runstop":
                    out["containment"] = r["containment"]
        out["runstop_ms"][str(n)], out["raw_ms"][str(n)] = rs, raw
    return out


def _agents(k: Any, plan: Any) -> dict[str, Any]:
    load(k)
    k.call("import _inscale as S")
    k.call("B.start_sleepers(2, True); B.stop_all_and_clean()")  # warm-up: imports, first widgets
    k.iopub.quiet(SETTLE)
    out: dict[str, Any] = {"counts": list(plan.curve_agents), "idle_cpu": _cpu_windows(k, plan.curve_window),
                           "start_s": {}, "raw_start_s": {}, "cpu": {}, "raw_cpu": {}}
    for n in plan.curve_agents:
        r = k.call(f"R = B.start_sleepers({n}, True)", want="R", timeout=300)
        if r["running"] != n:
            raise RuntimeError(f"only {r['running']} of {n} agents were running")
        time.sleep(SLEEP_SETTLE)  # past each new run's 3 s of fast polling: the steady state, as P7
        out["start_s"][str(n)] = r["s"]
        out["cpu"][str(n)] = _cpu_windows(k, plan.curve_window)
        k.call("B.stop_all_and_clean()", timeout=300)
        k.iopub.quiet(SETTLE)
        raw = k.call(f"R = S.raw_sleepers({n})", want="R", timeout=300)
        out["raw_start_s"][str(n)] = raw["s"]
        time.sleep(SLEEP_SETTLE)
        out["raw_cpu"][str(n)] = _cpu_windows(k, plan.curve_window)
        k.call("S.stop_raw()")
    return out


def _rss(k: Any, plan: Any, scratch: Path, mode: str) -> dict[str, Any]:
    load(k)
    k.call(f"B.capture({mode!r}, 100000, {str(scratch)!r})")  # warm-up
    k.iopub.quiet(SETTLE)
    before = k.rss()
    out: dict[str, Any] = {"before_mb": before / 1e6, "gb": list(plan.curve_gb), "growth_mb": {}, "peak_mb": {},
                           "seconds": {}}
    for gb in plan.curve_gb:
        lines = int(gb * 1e9 / LINE)
        with rss_samples(k, before) as peak:
            r = k.call(f"R = B.capture({mode!r}, {lines}, {str(scratch)!r})", want="R", timeout=1800)
        if not r["ok"]:
            raise RuntimeError(f"the {gb} GB {mode} capture was not verified")
        k.iopub.quiet(SETTLE)
        out["growth_mb"][str(gb)] = (k.rss() - before) / 1e6
        out["peak_mb"][str(gb)] = (max(peak) - before) / 1e6
        out["seconds"][str(gb)] = r["s"]
    return out


def measure(bench: Any) -> None:
    """Each curve in its own kernel (two for RSS); a failed curve is recorded, the rest go on."""
    plan = bench.plan
    scratch = bench.scratch
    for name, label, fn in (
        ("stop", "c-stop", lambda k: _stop(k, plan)),
        ("agents", "c-agents", lambda k: _agents(k, plan)),
        ("rss", "c-rss", lambda k: _rss(k, plan, scratch, "widget")),
        ("rss_raw", "c-rss-raw", lambda k: _rss(k, plan, scratch, "pipe")),
    ):
        print(f"curve {name}", flush=True)
        try:
            k = bench.kernel(label)
        except Exception as e:
            bench.errors[name] = f"the kernel did not start: {type(e).__name__}: {e}"
            continue
        try:
            bench.step(name, lambda fn=fn, k=k: fn(k))
        finally:
            k.close()


def _med(xs: list[float]) -> float:
    return statistics.median(xs)


def _line(ax: Any, xs: list[float], samples: list[list[float]], label: str, style: str) -> None:
    meds = [_med(s) for s in samples]
    lo = [m - min(s) for m, s in zip(meds, samples, strict=True)]
    hi = [max(s) - m for m, s in zip(meds, samples, strict=True)]
    ax.errorbar(xs, meds, yerr=[lo, hi], fmt=style, capsize=3, label=label)


def plot(results: dict[str, Any], out: Path) -> list[Path]:
    """One PNG per curve measured: docs/curve-stop.png, -agents, -cpu, -rss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []

    def save(fig: Any, ax: Any, name: str, title: str, xlabel: str, ylabel: str) -> None:
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = out / f"curve-{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    if "stop" in results:
        r = results["stop"]
        xs = r["sizes"]
        fig, ax = plt.subplots(figsize=(6, 4))
        _line(ax, xs, [r["runstop_ms"][str(n)] for n in xs], f"run.stop() ({r.get('containment', 'auto')})", "o-")
        _line(ax, xs, [r["raw_ms"][str(n)] for n in xs], "raw killpg(TERM) + wait", "s--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        save(fig, ax, "stop", "Verified stop vs tree size", "processes in the tree", "ms until all dead")
    if "agents" in results:
        r = results["agents"]
        xs = r["counts"]
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(xs, [r["start_s"][str(n)] for n in xs], "o-", label="%%agent_run cell, shown in a grid")
        ax.plot(xs, [r["raw_start_s"][str(n)] for n in xs], "s--", label="raw Popen loop in one cell")
        save(fig, ax, "agents", "Time until all running vs agents from one cell", "agents", "seconds")
        fig, ax = plt.subplots(figsize=(6, 4))
        _line(ax, xs, [r["cpu"][str(n)] for n in xs], "run widgets shown (sleeping agents)", "o-")
        _line(ax, xs, [r["raw_cpu"][str(n)] for n in xs], "raw Popen'd sleeps held by the kernel", "s--")
        ax.axhline(_med(r["idle_cpu"]), color="grey", linestyle=":", label="idle kernel")
        save(fig, ax, "cpu", "Kernel CPU vs widgets shown", "widgets (agents) shown", "% of one core")
    if "rss" in results:
        fig, ax = plt.subplots(figsize=(6, 4))
        for key, label, style in (("rss", "shown in a run widget", "o-"), ("rss_raw", "raw pipe copied to a file", "s--")):
            if key not in results:
                continue
            r = results[key]
            xs = r["gb"]
            ax.plot(xs, [r["growth_mb"][str(g)] for g in xs], style, label=f"{label}: after")
            ax.plot(xs, [r["peak_mb"][str(g)] for g in xs], style[0] + ":", alpha=0.6, label=f"{label}: peak during")
        ax.set_xscale("log")
        save(fig, ax, "rss", "Kernel RSS growth vs output volume", "GB of output", "MB over the kernel's start")
    return written


def text(results: dict[str, Any]) -> str:
    """The points, one line per x: runstop_nb's median next to the baseline's."""
    out = []
    if "stop" in results:
        r = results["stop"]
        out.append(f"stop latency, {r.get('containment', 'auto')} containment (median ms): processes, runstop_nb, raw")
        out += [f"  {n:>5}  {_med(r['runstop_ms'][str(n)]):8.1f}  {_med(r['raw_ms'][str(n)]):8.1f}" for n in r["sizes"]]
    if "agents" in results:
        r = results["agents"]
        out.append(f"agents from one cell: n, all running (s) runstop_nb / raw, kernel CPU % runstop_nb / raw "
                   f"(idle {_med(r['idle_cpu']):.2f} %)")
        out += [f"  {n:>5}  {r['start_s'][str(n)]:6.2f} / {r['raw_start_s'][str(n)]:5.2f}  "
                f"{_med(r['cpu'][str(n)]):6.2f} / {_med(r['raw_cpu'][str(n)]):5.2f}" for n in r["counts"]]
    for key, label in (("rss", "shown in a run widget"), ("rss_raw", "raw pipe copy")):
        if key in results:
            r = results[key]
            out.append(f"kernel RSS, {label} (before {r['before_mb']:.0f} MB): GB, growth after, peak during (MB), s")
            out += [f"  {g:>5}  {r['growth_mb'][str(g)]:7.1f}  {r['peak_mb'][str(g)]:7.1f}  {r['seconds'][str(g)]:6.1f}"
                    for g in r["gb"]]
    return "\n".join(out)
