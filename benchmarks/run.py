"""runstop_nb benchmarks: every figure next to its baseline, measured in the same run.

    python benchmarks/run.py [--json PATH] [--markdown PATH] [--quick]
    python benchmarks/run.py --curves [--quick] [--json PATH]

Starts real Jupyter kernels (jupyter_client) for everything, prints a table of medians
with min and max, next to each baseline and the ratio, and says which targets are met
(issue 16's targets; docs/benchmarks.md). P10 runs in a process of its own
(``_records.py``). ``--quick`` runs a small version of every measurement (a smoke test,
not the figures). The full run takes five to eight minutes on a 2-core machine.

``--curves`` measures instead how four costs grow with load, each next to its raw
baseline, and plots them into docs/curve-*.png (``_curves.py``; needs matplotlib, the
``bench`` extra).

Everything the benchmarks start is stopped by pid before they exit, and every file they
write lives in one temporary folder that is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _capture  # noqa: E402
import _latency  # noqa: E402
import _load  # noqa: E402
import _metrics  # noqa: E402
import _scale  # noqa: E402
import psutil  # noqa: E402
from _kernel import Kernel, kernel_env  # noqa: E402
from _plan import Plan  # noqa: E402
from _report import Metric, failed, markdown, table  # noqa: E402

TITLES = {  # issue 16's targets, as the table says them when a measurement failed
    "P1": ("capture", "s", "ratio ≤ 1.0"),
    "P2": ("widget traffic", "MB", "≤ 10 updates/s, each ≤ 64 KiB, total ≤ 3 MB"),
    "P3": ("stop, cooperative tree", "ms", "median ≤ 8 ms in every containment mode"),
    "P4": ("stop, TERM ignored", "ms", "median ≤ 220 ms (grace + 20) in every containment mode"),
    "P5": ("first output line", "ms", "≤ raw + 20 ms; 50 agents from one cell running ≤ 1 s; 200 ≤ 4 s"),
    "P6": ("responsiveness under floods", "ms", "ratio ≤ 1.5"),
    "P7": ("sleeping agents", "% CPU", "kernel CPU ≤ 1 %; ≤ 8 MB PSS per run"),
    "P8": ("kernel RSS after big output", "MB", "growth ≤ 20 MB"),
    "P9": ("live agents in one kernel", "% CPU", "kernel CPU ≤ 2 %, all shown; stop_all() ≤ 1.5 s, verified"),
    "P10": ("a history of 100,000 runs", "ms", "history ≤ 50 ms, load ≤ 20 ms, ls ≤ 400 ms, ≤ 100 MB, start not slower"),
}


class Bench:
    """One benchmark session: a temporary folder, the kernels, and what they measured."""

    def __init__(self, plan: Plan, root: Path) -> None:
        self.plan = plan
        self.root = root
        self.scratch = root / "scratch"
        self.scratch.mkdir()
        self.results: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self.kernel_pids: list[int] = []
        self.owner_pids: list[int] = []  # processes that own runs: the kernels and P10's process

    def kernel(self, label: str) -> Kernel:
        cwd = self.root / label
        cwd.mkdir()
        k = Kernel(cwd, kernel_env(self.root / "home"), HERE)
        self.kernel_pids.append(k.pid)
        self.owner_pids.append(k.pid)
        return k

    def step(self, name: str, fn: Callable[[], Any]) -> None:
        """Run one measurement; a failure is recorded against it and the rest carry on."""
        t0 = time.perf_counter()
        print(f"  {name} ...", end="", flush=True)
        try:
            self.results[name] = fn()
            print(f" {time.perf_counter() - t0:.1f} s", flush=True)
        except Exception as e:
            self.errors[name] = f"{type(e).__name__}: {e}"
            print(f" FAILED: {self.errors[name]}", flush=True)
            traceback.print_exc()

    def measure(self) -> None:
        p, s = self.plan, self.scratch
        groups: list[tuple[str, list[tuple[str, Callable[[Kernel], Any]]]]] = [
            ("kernel A: capture, stop, first line", [
                ("capture", lambda k: _capture.capture(k, p, s)),
                ("naive", lambda k: _capture.naive(k, p)),
                ("stops", lambda k: _latency.stops(k, p)),
                ("first_lines", lambda k: _latency.first_lines(k, p)),
            ]),
            ("kernel B: responsiveness under floods", [("flood", lambda k: _load.responsiveness(k, p, s))]),
            ("kernel C: sleeping agents", [("sleep", lambda k: _load.sleepers(k, p, s))]),
            ("kernel D: big output", [("big", lambda k: _capture.big_output(k, p, s))]),
            (f"kernel E: {p.crowd} agents in one kernel", [("crowd", lambda k: _scale.crowd(k, p))]),
        ]
        for i, (title, steps) in enumerate(groups):
            print(title, flush=True)
            try:
                k = self.kernel(f"k{i}")
            except Exception as e:
                for name, _ in steps:
                    self.errors[name] = f"the kernel did not start: {type(e).__name__}: {e}"
                continue
            try:
                for name, fn in steps:
                    self.step(name, lambda fn=fn, k=k: fn(k))
            finally:
                k.close()
        print(f"P10: a history of {p.history_rows:,} runs (its own process)", flush=True)
        self.step("history", self.history)

    def history(self) -> dict[str, Any]:
        """P10, in a process of its own (_records.py): its JSON document."""
        cmd = [sys.executable, str(HERE / "_records.py"), "--rows", str(self.plan.history_rows),
               "--samples", str(self.plan.history_samples), "--scratch", str(self.root / "p10")]
        env = kernel_env(self.root / "home")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.owner_pids.append(proc.pid)
        out, err = proc.communicate(timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"_records.py exited {proc.returncode}: {err.strip()[-2000:]}")
        doc: dict[str, Any] = json.loads(out)
        return doc

    def metrics(self) -> list[Metric]:
        r, p = self.results, self.plan
        builders: dict[str, tuple[tuple[str, ...], Callable[[], Metric | list[Metric]]]] = {
            "P1": (("capture",), lambda: _metrics.p1(r["capture"], p)),
            "P2": (("capture", "naive"), lambda: _metrics.p2(r["capture"], r["naive"], r.get("big"), p)),
            "P3": (("stops",), lambda: _metrics.p3(r["stops"])),
            "P4": (("stops",), lambda: _metrics.p4(r["stops"])),
            "P5": (("first_lines",), lambda: _metrics.p5(r["first_lines"], r.get("sleep"), r.get("crowd"), p)),
            "P6": (("flood",), lambda: _metrics.p6(r["flood"], p)),
            "P7": (("sleep",), lambda: _metrics.p7(r["sleep"], p)),
            "P8": (("big",), lambda: _metrics.p8(r["big"])),
            "P9": (("crowd",), lambda: _metrics.p9(r["crowd"])),
            "P10": (("history",), lambda: _metrics.p10(r["history"])),
        }
        out: list[Metric] = []
        for key, (needs, build) in builders.items():
            title, unit, target = TITLES[key]
            missing = [f"{n}: {self.errors[n]}" for n in needs if n in self.errors]
            if missing:
                out.append(failed(key, title, unit, target, "; ".join(missing)))
                continue
            try:
                built = build()
                out.extend(built if isinstance(built, list) else [built])
            except Exception as e:
                out.append(failed(key, title, unit, target, f"{type(e).__name__}: {e}"))
        return out

    def leftovers(self) -> list[int]:
        """Processes started for our kernels that are still alive; killed by pid."""
        owners = {f"RUNSTOP_NB_OWNER={pid}:".encode() for pid in self.owner_pids}
        found = []
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == os.getpid():
                continue
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    env = f.read()
                proc = psutil.Process(int(name))
                if any(o in env for o in owners) and proc.status() != psutil.STATUS_ZOMBIE:
                    proc.kill()
                    found.append(proc.pid)
            except (OSError, psutil.Error):
                continue
        return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, metavar="PATH", help="write the figures as JSON")
    ap.add_argument("--markdown", type=Path, metavar="PATH", help="write the table as Markdown")
    ap.add_argument("--quick", action="store_true", help="a small version of everything (smoke test)")
    ap.add_argument("--curves", action="store_true", help="measure and plot the cost curves into docs/ instead")
    ap.add_argument("--out", type=Path, default=HERE.parent / "docs", metavar="DIR",
                    help="where --curves writes its PNGs (default: docs/)")
    args = ap.parse_args(argv)
    plan = Plan.quick() if args.quick else Plan.full()
    if args.curves:
        return curves(plan, args)
    t0 = time.perf_counter()
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="runstop-bench-"))
    print(f"runstop_nb benchmarks ({plan.name}), {os.cpu_count()} CPUs, load {load_before[0]:.2f}; "
          f"scratch {root}", flush=True)
    bench = Bench(plan, root)
    try:
        bench.measure()
    finally:
        stray = bench.leftovers()
        shutil.rmtree(root, ignore_errors=True)
    metrics = bench.metrics()
    wall = time.perf_counter() - t0
    load_after = os.getloadavg()
    print()
    print(table(metrics))
    whole = [m for m in metrics if "/" not in m.key]
    met = sum(m.met for m in whole)
    print(f"\n{met} of {len(whole)} targets met; wall time {wall:.0f} s; load average "
          f"{load_before[0]:.2f} before, {load_after[0]:.2f} after")
    if stray:
        print(f"warning: killed {len(stray)} leftover processes: {stray}", file=sys.stderr)
    run_info = {
        "mode": plan.name, "wall_s": round(wall, 1), "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in load_after],
        "python": platform.python_version(), "platform": platform.platform(),
        "command": "python benchmarks/run.py" + (" --quick" if args.quick else ""),
        "leftover_processes_killed": stray, "kernel_pids": bench.kernel_pids, "owner_pids": bench.owner_pids,
        "errors": bench.errors,
    }
    if args.json:
        doc = {"metrics": {m.key: m.as_json() for m in metrics}, "run": run_info}
        args.json.write_text(json.dumps(doc, indent=2, default=_plain) + "\n")
    if args.markdown:
        args.markdown.write_text(markdown(metrics) + "\n")
    return 0 if not bench.errors and not stray else 1


def curves(plan: Plan, args: argparse.Namespace) -> int:
    """``--curves``: measure each curve in its own kernel(s), plot the PNGs, print the points."""
    import _curves

    t0 = time.perf_counter()
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="runstop-curves-"))
    print(f"runstop_nb cost curves ({plan.name}), {os.cpu_count()} CPUs, load {load_before[0]:.2f}; "
          f"scratch {root}", flush=True)
    bench = Bench(plan, root)
    try:
        _curves.measure(bench)
    finally:
        stray = bench.leftovers()
        shutil.rmtree(root, ignore_errors=True)
    pngs = _curves.plot(bench.results, args.out)
    print()
    print(_curves.text(bench.results))
    load_after = os.getloadavg()
    print(f"\nwrote {', '.join(str(p) for p in pngs)}; wall time {time.perf_counter() - t0:.0f} s; load average "
          f"{load_before[0]:.2f} before, {load_after[0]:.2f} after")
    if args.json:
        doc = {"curves": bench.results, "run": {
            "mode": plan.name, "cpus": os.cpu_count(), "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in load_after], "errors": bench.errors,
            "leftover_processes_killed": stray, "pngs": [str(p) for p in pngs]}}
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    if stray:
        print(f"warning: killed {len(stray)} leftover processes: {stray}", file=sys.stderr)
    return 0 if not bench.errors and not stray else 1


def _plain(obj: Any) -> Any:
    """JSON for the dataclasses inside details (traffic records)."""
    if hasattr(obj, "as_json"):
        return obj.as_json()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


if __name__ == "__main__":
    sys.exit(main())
