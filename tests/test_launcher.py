"""The launch seam: the guarded local backend (default), the direct one (no fork, e.g. Windows),
and the choice of containment."""

from __future__ import annotations

import pytest

import runstop_nb
from runstop_nb._direct import DirectAgent
from runstop_nb._launcher import wanted_containment
from runstop_nb._local import GuardedAgent

from .helpers import cookie_alive, wait_for


def test_default_launcher_puts_a_guard_above_the_agent() -> None:
    run = runstop_nb.start(["sleep", "1000"])
    assert isinstance(run._agent, GuardedAgent)
    guard = run._agent.guard
    assert guard is not None and guard.pid != run.pid
    assert run.members()[0].ppid() == guard.pid
    assert run._agent._link.pid not in (run.pid, guard.pid), "guards are forked by the kernel's warden"


def test_guards_are_forked_by_one_warden_per_kernel() -> None:
    a = runstop_nb.start(["sleep", "1000"])
    b = runstop_nb.start(["sleep", "1000"])
    links = {a._agent._link.pid, b._agent._link.pid}  # type: ignore[union-attr]
    assert len(links) == 1
    import psutil

    assert {psutil.Process(r._agent.guard.pid).ppid() for r in (a, b)} == links  # type: ignore[union-attr]


def test_containment_is_validated() -> None:
    assert wanted_containment("guard") == "guard"
    with pytest.raises(runstop_nb.InvalidSpecError, match="auto, cgroup or guard"):
        runstop_nb.start(["true"], containment="jail")


def test_bad_containment_variable_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNSTOP_NB_CONTAINMENT", "docker")
    with pytest.raises(runstop_nb.InvalidSpecError, match="RUNSTOP_NB_CONTAINMENT"):
        runstop_nb.start(["true"])


@pytest.fixture
def direct(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNSTOP_NB_NO_GUARD", "1")


def test_direct_launcher_stops_the_visible_tree(direct: None) -> None:
    run = runstop_nb.start(["bash", "-c", "(trap '' TERM; sleep 1000) & sleep 1000 & wait"], grace=0.3)
    assert isinstance(run._agent, DirectAgent) and run.containment == "none"
    wait_for(lambda: len(cookie_alive(run.spec.cookie)) >= 3, 10, "the tree")
    result = run.stop()
    assert result.stopped and result.escalated and result.verified_by == "scan"
    assert result.signalled == 3
    assert cookie_alive(run.spec.cookie) == []


def test_direct_launcher_reports_exit_and_cleans_leftovers(direct: None) -> None:
    run = runstop_nb.start(["bash", "-c", "sleep 1000 & echo bye; exit 4"])
    assert run.wait(10) == "failed" and run.returncode == 4
    assert run.output() == "bye\n"
    assert cookie_alive(run.spec.cookie) == []


def test_direct_launcher_command_not_found_is_typed(direct: None) -> None:
    with pytest.raises(runstop_nb.CommandNotFoundError):
        runstop_nb.start(["no-such-command-xyz"])
