"""The kernel-wide registry: lookups, unique live names, threads, and module reloads."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import threading

import runstop_nb
from runstop_nb._registry import kernel_state


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


def test_registry_survives_reloading_every_module() -> None:
    run = runstop_nb.start(["sleep", "1000"], name="survivor")
    state = kernel_state()
    names = [m.name for m in pkgutil.iter_modules(runstop_nb.__path__, "runstop_nb.")]
    for name in names:
        if name != "runstop_nb._guard" and name in sys.modules:
            importlib.reload(sys.modules[name])
    importlib.reload(runstop_nb)
    assert kernel_state() is state
    again = runstop_nb.get("survivor")
    assert again is run and again.pid == run.pid
    assert run in runstop_nb.runs()
    fresh = runstop_nb.start(["sleep", "1000"], name="after-reload")
    assert fresh.stop(grace=0.5).stopped
    assert run.stop(grace=0.5).stopped
