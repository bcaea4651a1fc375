"""Rendering a 100,000-event agent stream: widget traffic (P2's bounds) and kernel
responsiveness (P6's bound), each next to its baseline, measured in the same run.

    .venv/bin/python benchmarks/agent_stream.py [--events N] [--json PATH]

The stream is a real Claude Code capture (tests/fixtures/streams), its assistant text,
tool call and tool result events repeated with fresh ids until it holds N events, then
its final result. Two shapes, in one real kernel with every run's widget on screen:

* **burst**: ``cat`` writes the whole stream at once (about 50 MB): the renderer must
  keep its updates to at most 10 a second per view, each at most 64 KiB, however far
  behind the parser is.
* **steady**: three agents replay events for 20 s at about 2,000 events a second each,
  while the benchmark times trivial cells; the baseline is the same kernel, idle, timed
  just before (interleaved samples are not possible: the agents run throughout).

Prints one table; ``--json`` writes the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _kernel import Kernel, Traffic, kernel_env  # noqa: E402

CAPTURE = ROOT / "tests" / "fixtures" / "streams" / "claude-multi_turn.jsonl"
P2_RATE, P2_MESSAGE = 10, 64 << 10
P6_RATIO = 2.0  # the agent issue's bound (round trip at most twice the idle kernel's)
REPLAY = r"""
import sys, time
lines = open(sys.argv[1], "rb").read().splitlines(keepends=True)
rate, seconds = float(sys.argv[2]), float(sys.argv[3])
out = sys.stdout.buffer
t0, i = time.monotonic(), 0
while time.monotonic() - t0 < seconds:
    out.write(lines[i % (len(lines) - 1)])
    i += 1
    if i % 20 == 0:
        out.flush()
        time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
out.write(lines[-1]); out.flush()
"""


def make_stream(path: Path, events: int) -> int:
    """Write ``events`` events (the capture's middle repeated with fresh ids); return bytes."""
    rows = [json.loads(line) for line in CAPTURE.read_text().splitlines() if line.strip()]
    head, body, tail = rows[0], rows[1:-1], rows[-1]
    with open(path, "w") as f:
        f.write(json.dumps(head) + "\n")
        n = 1
        while n < events - 1:
            for row in body:
                text = json.dumps(row).replace("rehearsal000", f"r{n:07d}_")
                f.write(text + "\n")
                n += 1
                if n >= events - 1:
                    break
        f.write(json.dumps(tail) + "\n")
    return path.stat().st_size


def burst(k: Kernel, stream: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    k.call(f"import runstop_nb\nfrom IPython.display import display\n"
           f"b = runstop_nb.start(['cat', {str(stream)!r}], name='burst', format='claude')\ndisplay(b)")
    status = k.call("b.wait(300)", want="b.status")
    cards = k.call("pass", want="len(b.cards())")
    agent = k.call("pass", want="b.agent.tool_calls")
    k.iopub.quiet(1.0, 30)
    t1 = time.perf_counter()
    traffic = Traffic.of(k.iopub.since(t0, t1), t1 - t0)
    return {"status": status, "cards_kept": cards, "tool_calls": agent, **traffic.as_json()}


def round_trips(k: Kernel, n: int) -> list[float]:
    out = []
    for _ in range(n):
        _, secs = k.execute("1")
        out.append(secs * 1000)
        time.sleep(0.05)
    return out


def steady(k: Kernel, stream: Path, scratch: Path, seconds: float = 20.0) -> dict[str, Any]:
    replay = scratch / "replay.py"
    replay.write_text(REPLAY)
    idle = round_trips(k, 60)
    k.call("import sys\nsteady = [runstop_nb.start([sys.executable, "
           f"{str(replay)!r}, {str(stream)!r}, '2000', '{seconds}'], name=f'steady{{i}}', format='claude') "
           "for i in range(3)]\nfor r in steady: display(r)")
    t0 = time.perf_counter()
    busy = round_trips(k, 120)
    t1 = time.perf_counter()
    k.call("[r.wait(120) for r in steady]")
    traffic = Traffic.of(k.iopub.since(t0, t1), t1 - t0)
    events = k.call("pass", want="sum(r.lines for r in steady)")
    return {"idle_ms": statistics.median(idle), "busy_ms": statistics.median(busy),
            "ratio": statistics.median(busy) / statistics.median(idle), "lines_streamed": events,
            "max_updates_per_s": traffic.max_updates_per_s, "max_message": traffic.max_message}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="runstop-bench-agents-") as tmp:
        scratch = Path(tmp)
        stream = scratch / "stream.jsonl"
        size = make_stream(stream, args.events)
        k = Kernel(scratch, kernel_env(scratch / "home"), HERE)
        try:
            b = burst(k, stream)
            s = steady(k, stream, scratch)
        finally:
            k.close()
    ok2 = b["max_updates_per_s"] <= P2_RATE and b["max_message"] <= P2_MESSAGE
    ok6 = s["ratio"] <= P6_RATIO
    print(f"agent stream of {args.events:,} events ({size / 1e6:.1f} MB), one real kernel, widgets shown")
    print("| Metric | runstop_nb | Bound | Met |")
    print("|---|---|---|---|")
    print(f"| burst: updates per second per view (busiest second) | {b['max_updates_per_s']} | ≤ {P2_RATE} | "
          f"{'yes' if b['max_updates_per_s'] <= P2_RATE else '**no**'} |")
    print(f"| burst: largest message | {b['max_message'] / 1024:.1f} KiB | ≤ 64 KiB | "
          f"{'yes' if b['max_message'] <= P2_MESSAGE else '**no**'} |")
    print(f"| burst: traffic in total | {b['bytes'] / 1e6:.2f} MB in {b['seconds']:.1f} s ({b['messages']} messages; "
          f"{b['tool_calls']:,} tool calls parsed, {b['cards_kept']} cards kept) | — | — |")
    print(f"| steady (3 agents × 2,000 events/s): trivial cell round trip | {s['busy_ms']:.1f} ms vs "
          f"{s['idle_ms']:.1f} ms idle = {s['ratio']:.2f}x | ≤ {P6_RATIO}x | {'yes' if ok6 else '**no**'} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"events": args.events, "bytes": size, "burst": b, "steady": s,
                                               "p2_met": ok2, "p6_met": ok6}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
