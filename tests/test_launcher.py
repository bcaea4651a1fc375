"""The launch seam: the guarded launcher (default) and the direct one (no fork, e.g. Windows)."""

from __future__ import annotations

import pytest

import runstop_nb
from runstop_nb._launcher import DirectAgent, GuardedAgent

from .conftest import cookie_alive, wait_for


def test_default_launcher_puts_a_guard_above_the_agent() -> None:
    run = runstop_nb.start(["sleep", "1000"])
    assert isinstance(run._agent, GuardedAgent)
    guard = run._agent.guard
    assert guard is not None and guard.pid != run.pid
    assert run.members()[0].ppid() == guard.pid


@pytest.fixture
def direct(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNSTOP_NB_NO_GUARD", "1")


def test_direct_launcher_stops_the_visible_tree(direct: None) -> None:
    run = runstop_nb.start(["bash", "-c", "(trap '' TERM; sleep 1000) & sleep 1000 & wait"], grace=0.3)
    assert isinstance(run._agent, DirectAgent)
    wait_for(lambda: len(cookie_alive(run.spec.cookie)) >= 3, 10, "the tree")
    result = run.stop()
    assert result.stopped and result.escalated
    assert cookie_alive(run.spec.cookie) == []


def test_direct_launcher_reports_exit_and_cleans_leftovers(direct: None) -> None:
    run = runstop_nb.start(["bash", "-c", "sleep 1000 & echo bye; exit 4"])
    assert run.wait(10) == "failed" and run.returncode == 4
    assert run.output() == "bye\n"
    assert cookie_alive(run.spec.cookie) == []


def test_direct_launcher_command_not_found_is_typed(direct: None) -> None:
    with pytest.raises(runstop_nb.CommandNotFoundError):
        runstop_nb.start(["no-such-command-xyz"])
