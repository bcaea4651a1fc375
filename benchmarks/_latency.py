"""P3, P4 and P5: how long a stop takes, and how soon a started agent's first line shows.

P3 and P4 run once per containment mode the kernel can use (cgroup and guard here).

Every sample is a (runstop, raw) pair on the same command, alternating which goes first.
P5 is measured at three depths: the run's log (``run.output()`` reads it), the live tail
the widget renders from (``run.lines``), and end to end, the line arriving on the
client's IOPub socket inside the widget (raw: printed by the cell that read the pipe).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from _kernel import Kernel
from _plan import Plan


def _pairs(k: Kernel, n: int, a: str, b: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run n interleaved (a, b) pairs of kernel expressions; ``b`` goes first on odd pairs."""
    out_a, out_b = [], []
    for i in range(n):
        for which, code in ((0, a), (1, b)) if i % 2 == 0 else ((1, b), (0, a)):
            r = k.call(f"R = {code}", want="R")
            (out_a if which == 0 else out_b).append(r)
    return out_a, out_b


def stops(k: Kernel, plan: Plan) -> dict[str, Any]:
    """P3 (cooperative tree, default grace) and P4 (one member ignores TERM, grace 0.2 s),
    in every containment mode this kernel can use (cgroup where delegated, and guard)."""
    modes = k.call("M = B.containments()", want="M")
    out: dict[str, Any] = {"modes": modes, "p3": {}, "p4": {}}
    for mode in modes:
        coop_rs, coop_raw = _pairs(k, plan.stop_pairs, f"B.stop('runstop', False, 3.0, {mode!r})",
                                   "B.stop('raw', False, 3.0)")
        stub_rs, stub_raw = _pairs(k, plan.stubborn_pairs, f"B.stop('runstop', True, 0.2, {mode!r})",
                                   "B.stop('raw', True, 0.2)")
        used = {r["containment"] for r in coop_rs + stub_rs}
        out["p3"][mode] = {"runstop_ms": [r["s"] * 1e3 for r in coop_rs], "raw_ms": [r["s"] * 1e3 for r in coop_raw],
                           "verified": all(r["ok"] for r in coop_rs + coop_raw) and used == {mode}}
        out["p4"][mode] = {"runstop_ms": [r["s"] * 1e3 for r in stub_rs], "raw_ms": [r["s"] * 1e3 for r in stub_raw],
                           "verified": all(r["ok"] and r["escalated"] for r in stub_rs + stub_raw) and used == {mode}}
    return out


def _marker() -> tuple[str, bytes]:
    """An echo argument whose output never appears in the cell's code: the shell
    expands ``$((6*7))``, so only the agent's output holds the expanded text."""
    tag = uuid.uuid4().hex[:12]
    return f"first-$((6*7))-{tag}", f"first-42-{tag}".encode()


def first_lines(k: Kernel, plan: Plan) -> dict[str, Any]:
    rs, raw = [], []
    for i in range(plan.first_line_pairs):
        order = ("runstop", "raw") if i % 2 == 0 else ("raw", "runstop")
        for mode in order:
            _, expected = _marker()
            r = k.call(f"R = B.first_line({mode!r}, {expected.decode()!r})", want="R")
            (rs if mode == "runstop" else raw).append(r)
    e2e_rs, e2e_raw = [], []
    for i in range(plan.e2e_pairs):
        order = ("runstop", "raw") if i % 2 == 0 else ("raw", "runstop")
        for mode in order:
            (e2e_rs if mode == "runstop" else e2e_raw).append(_end_to_end(k, mode, i))
    return {
        "log_ms": [r["s"] * 1e3 for r in rs],
        "tail_ms": [r["tail_s"] * 1e3 for r in rs],
        "started_ms": [r["started_s"] * 1e3 for r in rs],
        "raw_ms": [r["s"] * 1e3 for r in raw],
        "e2e_ms": e2e_rs,
        "e2e_raw_ms": e2e_raw,
        "verified": all(r["ok"] for r in rs + raw),
    }


def _end_to_end(k: Kernel, mode: str, i: int) -> float:
    """Milliseconds from sending the cell to its first output line arriving on IOPub."""
    arg, expected = _marker()
    k.iopub.watch(expected)
    name = f"p5e2e-{i}-{uuid.uuid4().hex[:6]}"
    if mode == "runstop":
        line = f"--name {name} --grace 0.5 -- sh -c 'echo {arg}; exec sleep 1000'"
        code = f"get_ipython().run_line_magic('agent_run', {line!r})"
    else:
        code = f"B.raw_print_first_line({arg!r})"
    t0 = time.perf_counter()
    k.call(code)
    deadline = time.perf_counter() + 10
    while (seen := k.iopub.seen(expected)) is None:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"benchmark: the first line of {mode} never reached IOPub")
        time.sleep(0.001)
    if mode == "runstop":
        k.call(f"B.stop_named({name!r})")
    return (seen - t0) * 1e3
