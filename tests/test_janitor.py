"""The janitor: finding trees whose kernel died (pid + create time), stopping this
project's on %load_ext, only reporting the rest, and reap_orphans() for those."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

import runstop_nb
from runstop_nb import _janitor

from .helpers import FORKCHAIN, PY, Canaries, alive, beats, cookie_alive, helpers_of, kill_pids, wait_for
from .orphans import make_orphan
from .standin import standin_kernel

pytestmark = pytest.mark.kernel


def test_scan_finds_the_orphan_of_a_kernel_killed_with_its_guard(tmp_path: Path) -> None:
    orphan = make_orphan(tmp_path)
    try:
        (tree,) = [t for t in _janitor.scan() if t.cookie == orphan.cookie]
        assert tree.orphaned and tree.owner is not None and tree.owner[0] == orphan.kernel
        assert tree.pids == (orphan.pid,) and tree.run_id == orphan.id and not tree.guard_busy
        assert runstop_nb.load(orphan.id).status == "orphaned"
    finally:
        kill_pids(cookie_alive(orphan.cookie))


def test_load_report_stops_this_projects_orphan_and_says_so(tmp_path: Path, canaries: Canaries) -> None:
    canaries.start(["sleep", "1000"])
    bystander = runstop_nb.start(["sleep", "1000"], name="bystander")  # its kernel (this process) lives
    orphan = make_orphan(tmp_path, name="left-behind")
    try:
        t0 = time.monotonic()
        message = _janitor.load_report()
        took = time.monotonic() - t0
        assert message is not None and "\n" not in message
        assert "stopping 1 orphaned run of this project" in message and f"left-behind ({orphan.id})" in message
        assert took < 1.0, f"load_report took {took:.3f} s: it must not wait for the stop"
        wait_for(lambda: not cookie_alive(orphan.cookie), 10, "the janitor to stop the orphan")
        wait_for(lambda: runstop_nb.load(orphan.id).status == "cancelled", 10, "the history to record it")
        past = runstop_nb.load(orphan.id)
        assert past.error is not None and "kernel had died" in past.error
        assert past.last_stop is not None and past.last_stop.prior_status == "orphaned" and past.last_stop.stopped
        canaries.assert_alive()
        assert bystander.status == "running" and alive(bystander.pid or 0)
    finally:
        kill_pids(cookie_alive(orphan.cookie))


def test_orphans_of_another_project_are_reported_not_stopped(tmp_path: Path) -> None:
    other_home = tmp_path / "other-project" / ".runstop"
    orphan = make_orphan(tmp_path, env={"RUNSTOP_NB_HOME": str(other_home)})
    try:
        message = _janitor.load_report()
        assert message is not None and "from elsewhere" in message and "reap_orphans()" in message
        assert "stopping" not in message, "nothing in this runs home's history is orphaned"
        time.sleep(0.5)  # give a wrongly started janitor thread the time to act
        assert alive(orphan.pid), "another project's orphan was stopped on load"
        (result,) = runstop_nb.reap_orphans([orphan.id], grace=1)
        assert result.stopped and result.run_id == orphan.id and result.prior_status == "orphaned"
        assert result.signalled >= 1
        assert not cookie_alive(orphan.cookie)
    finally:
        kill_pids(cookie_alive(orphan.cookie))


def test_trees_of_a_live_kernel_are_never_orphans() -> None:
    run = runstop_nb.start(["sleep", "1000"], name="owned")
    (tree,) = [t for t in _janitor.scan() if t.cookie == run.spec.cookie]
    assert tree.owner_alive and not tree.orphaned
    assert tree.guard_busy, "the kernel's warden and the run's guard are alive and running"
    assert set(tree.pids) == {run.pid}
    assert run.spec.cookie not in {t.cookie for t in _janitor.orphans()}
    assert runstop_nb.reap_orphans([run.id]) == []
    assert run.status == "running"


def test_load_report_is_quiet_and_leaves_no_runs_home_without_orphans(runs_home: Path) -> None:
    t0 = time.monotonic()
    message = _janitor.load_report()
    assert time.monotonic() - t0 < 1.0
    assert message is None or "from elsewhere" in message  # other sessions' orphans may exist
    assert not runs_home.exists(), "loading the extension must not create a runs home"


def test_load_report_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> list[_janitor.Tree]:
        raise PermissionError("no /proc for you")

    monkeypatch.setattr(_janitor, "scan", broken)
    assert _janitor.load_report() is None


def test_reap_ends_a_fork_chain_orphan_by_its_cgroup(tmp_path: Path, mode: str) -> None:
    """Kernel, guard and warden all SIGKILLed: a TERM-ignoring fork chain outruns any /proc
    scan, but not its cgroup, which the janitor finds in the dead kernel's group."""
    if mode != "cgroup":
        pytest.skip("without a cgroup, an orphaned fork chain is found only by scanning (documented)")
    beat = tmp_path / "orphan.beat"
    with standin_kernel([{"cmd": [PY, FORKCHAIN, "same", str(beat)], "grace": 0.3}], tmp_path / "h",
                        {"RUNSTOP_NB_CONTAINMENT": mode}) as kernel:
        wait_for(lambda: beats(beat) >= 20, 10, "the chain")
        helpers = helpers_of(kernel.pid)
        for pid in helpers:
            os.kill(pid, signal.SIGSTOP)
        kernel.kill()
        kill_pids(helpers)
        wait_for(lambda: not any(alive(p) for p in helpers), 10, "the helpers to die")
        size = beats(beat)
        time.sleep(0.1)
        assert beats(beat) > size, "the chain outlived its kernel and helpers: an orphan"
        results = [r for r in runstop_nb.reap_orphans(grace=0.2) if r.run_id == kernel.runs[0].id]
        assert len(results) == 1 and results[0].stopped and results[0].verified_by == "cgroup", results
        size = beats(beat)
        time.sleep(0.1)
        assert beats(beat) == size, "the chain still runs after the janitor said stopped"
