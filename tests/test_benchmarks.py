"""The benchmark command runs end to end and writes well-formed JSON.

Only the smoke plan (``--quick``): the figures themselves are timing-based and belong to
``python benchmarks/run.py``, not to the test suite. What must hold here is the contract:
the command exits, every metric P1..P10 is present with the documented keys and types
(and their parts: P3 and P4 per containment mode, P5, P9 and P10's sub-figures), and
nothing it started is left alive. No figure is judged here: ``met`` may be either.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from .helpers import pids_with

ROOT = Path(__file__).resolve().parent.parent
KEYS = {"value", "baseline", "ratio", "unit", "target", "met"}
METRICS = [f"P{i}" for i in range(1, 11)]
PARTS = {"P3": {"guard"}, "P4": {"guard"}, "P5": {"first", "cell", "crowd"}, "P9": {"cpu", "stop_all"},
         "P10": {"history", "load", "ls", "size", "start"}}


def _agents_of(kernel_pids: set[int]) -> list[int]:
    """Live processes whose runstop_nb owner is one of the benchmark's kernels."""
    return pids_with(*(f"RUNSTOP_NB_OWNER={pid}:".encode() for pid in kernel_pids))


@pytest.mark.kernel
def test_quick_benchmark_writes_every_metric_as_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = dict(os.environ)
    env.pop("PYTEST_CURRENT_TEST", None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--json", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=170,
    )
    assert proc.returncode == 0, f"benchmark failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    doc = json.loads(out.read_text())
    metrics = doc["metrics"]
    assert sorted(k for k in metrics if "/" not in k) == sorted(METRICS)
    for key, parts in PARTS.items():  # guard containment always exists; cgroup where delegated
        assert {k.split("/", 1)[1] for k in metrics if k.startswith(key + "/")} >= parts, key
        assert metrics[key]["details"]["parts"] == [k for k in metrics if k.startswith(key + "/")], key
    for key in metrics:
        m = metrics[key]
        assert m.keys() >= KEYS, f"{key} lacks {KEYS - m.keys()}"
        assert "error" not in m, f"{key}: {m['error']}"
        assert isinstance(m["met"], bool)
        assert isinstance(m["value"], (int, float)) and (m["value"] >= 0 or key == "P8"), key  # RSS may shrink
        assert isinstance(m["unit"], str) and m["unit"] and isinstance(m["target"], str) and m["target"]
        assert m["min"] <= m["value"] <= m["max"], key
    for key in ("P1", "P2", "P3", "P4", "P5", "P6", "P8", "P9", "P10"):  # P7's baseline is "none", by the issue
        assert isinstance(metrics[key]["baseline"], (int, float)) and metrics[key]["baseline"] > 0, key
        assert isinstance(metrics[key]["ratio"], (int, float)) and metrics[key]["ratio"] > 0, key
    assert metrics["P7"]["baseline"] is None and metrics["P7"]["ratio"] is None
    # The table went to stdout, with a verdict per metric.
    for key in METRICS:
        assert f"\n{key} " in proc.stdout
    assert doc["run"]["mode"] == "quick" and not doc["run"]["errors"]
    assert doc["run"]["leftover_processes_killed"] == []
    # Checked independently too: no agent or guard of its kernels is alive, nor the kernels.
    kernels = set(doc["run"]["kernel_pids"])
    assert len(kernels) == 5
    assert set(doc["run"]["owner_pids"]) > kernels  # and P10's own process
    assert _agents_of(set(doc["run"]["owner_pids"])) == []
    assert _agents_of(kernels) == []
    for pid in kernels:
        try:
            assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, f"kernel {pid} still runs"
        except psutil.NoSuchProcess:
            pass
