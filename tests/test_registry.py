"""The kernel-wide registry: lookups, unique live names, threads, and module reloads."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import runstop_nb

from .helpers import cookie_alive, kill_pids


def test_get_by_id_name_and_prefix() -> None:
    run = runstop_nb.start(["sleep", "1000"], name="finder")
    assert runstop_nb.get("finder") is run
    assert runstop_nb.get(run.id) is run
    assert runstop_nb.get(run.id[:6]) is run
    assert run in runstop_nb.runs()


def test_name_lookup_prefers_the_live_run() -> None:
    old = runstop_nb.start(["true"], name="same")
    old.wait(10)
    new = runstop_nb.start(["sleep", "1000"], name="same")
    assert runstop_nb.get("same") is new


def test_unnamed_runs_get_unique_live_names() -> None:
    a = runstop_nb.start(["sleep", "1000"])
    b = runstop_nb.start(["sleep", "1000"])
    assert {a.name, b.name} == {"sleep", "sleep-2"}


def test_concurrent_starts_and_stops_from_threads() -> None:
    started: list[runstop_nb.Run] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        try:
            run = runstop_nb.start(["sleep", "1000"], name=f"t{i}")
            with lock:
                started.append(run)
            assert run.stop(grace=0.5).stopped
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(started) == 16
    assert all(r.status == "cancelled" for r in started)
    names = [r.name for r in runstop_nb.runs() if r in started]
    assert sorted(names) == sorted(f"t{i}" for i in range(16))


RELOAD_SCRIPT = r"""
import importlib, pkgutil, sys
import runstop_nb
from runstop_nb._kernelstate import kernel_state
run = runstop_nb.start(["sleep", "1000"], name="survivor")
state = kernel_state()
for info in pkgutil.iter_modules(runstop_nb.__path__, "runstop_nb."):
    if info.name != "runstop_nb._guard" and info.name in sys.modules:
        importlib.reload(sys.modules[info.name])
importlib.reload(runstop_nb)
assert kernel_state() is state, "the state object was replaced"
again = runstop_nb.get("survivor")
assert again is run and again.pid == run.pid
assert run in runstop_nb.runs()
fresh = runstop_nb.start(["sleep", "1000"], name="after-reload")
assert fresh.stop(grace=0.5).stopped
result = run.stop(grace=0.5)
assert result.stopped and run.status == "cancelled", result
print("OK", run.spec.cookie, fresh.spec.cookie)
"""


def test_registry_survives_reloading_every_module(tmp_path: Path) -> None:
    """In a child process: reloading every module re-creates classes (errors, enums), which
    would leak into every later test of this process."""
    proc = subprocess.run([sys.executable, "-c", RELOAD_SCRIPT], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, RUNSTOP_NB_HOME=str(tmp_path / "h")))
    cookies = proc.stdout.split()[1:] if proc.stdout.startswith("OK") else []
    try:
        assert proc.returncode == 0 and proc.stdout.startswith("OK"), proc.stderr[-3000:]
    finally:
        for cookie in cookies:
            kill_pids(cookie_alive(cookie))
