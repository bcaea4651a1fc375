"""Scenario 5: re-running a cell reattaches its live runs; --restart replaces them."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest
from playwright.sync_api import expect

from .page import LOAD, NotebookPage
from .probe import pids_owned_by, tree_by_cookie

pytestmark = pytest.mark.e2e
Notebook = Callable[[list[str]], NotebookPage]
Measure = Callable[[str, object], None]

NAMES = ("alpha", "beta", "gamma")
CELL = """%%agent_run{flags} --cols 3
alpha: python agents/counter.py --interval 0.2
beta: python agents/counter.py --interval 0.2
gamma: python agents/spawner.py --children 1
"""


def shown_pids(nb: NotebookPage) -> dict[str, str]:
    return {name: nb.text(nb.widget(name), ".runstop-pid") for name in NAMES}


def wait_streaming(nb: NotebookPage) -> None:
    expect(nb.widgets).to_have_count(3)
    for name in NAMES:
        nb.poll(partial(lambda n: len(nb.output_lines(nb.widget(n))) >= 2, name), 30, f"output in {name}")


def test_rerunning_the_cell_reattaches_and_restart_replaces(notebook: Notebook) -> None:
    nb = notebook([LOAD, CELL.format(flags="")])
    nb.run_all()
    wait_streaming(nb)
    first = nb.live_runs()
    assert set(first) == set(NAMES)
    kernel = nb.kernel_pid()
    assert kernel is not None
    # spawner: root + 1 child + a setsid'd child + a double-forked daemon (the guard carries no cookie)
    nb.poll(lambda: len(tree_by_cookie(first["gamma"].cookie)) >= 4, 10, "gamma's whole tree")
    family = pids_owned_by(kernel)
    runs_before = len(nb.runs())

    # Re-run: the same live runs, shown again; no process started or lost.
    nb.run_cell(1)
    assert nb.cell_text(1).count("already running") == 3, nb.cell_text(1)
    wait_streaming(nb)
    again = nb.live_runs()
    assert {n: (r.id, r.pid) for n, r in again.items()} == {n: (r.id, r.pid) for n, r in first.items()}
    assert shown_pids(nb) == {n: f"pid {r.pid}" for n, r in first.items()}
    assert len(nb.runs()) == runs_before, "re-running the cell started new runs"
    assert pids_owned_by(kernel) == family, "re-running the cell changed the set of agent processes"

    # --restart: every run replaced, each old tree verified gone.
    nb.run_cell(1, source=CELL.format(flags=" --restart"))
    wait_streaming(nb)
    fresh = nb.live_runs()
    assert set(fresh) == set(NAMES)
    for name in NAMES:
        old, new = first[name], fresh[name]
        assert new.id != old.id and new.pid != old.pid, f"{name} was not replaced"
        assert nb.text(nb.widget(name), ".runstop-pid") == f"pid {new.pid}"
        assert not tree_by_cookie(old.cookie), f"{name}'s old tree outlived --restart"
        assert tree_by_cookie(new.cookie), f"{name}'s new tree is not running"
    assert {r.name: r.status for r in nb.runs() if r.id in {f.id for f in first.values()}} == \
        dict.fromkeys(NAMES, "cancelled")
