"""The lifecycle table, without processes."""

from __future__ import annotations

import pytest

from runstop_nb._lifecycle import TERMINAL, TRANSITIONS, Event, RunStatus, next_status
from runstop_nb.errors import TransitionError


@pytest.mark.parametrize(("state", "event", "expected"), [
    (RunStatus.RUNNING, Event.STOP, RunStatus.STOPPING),
    (RunStatus.RUNNING, Event.TIMEOUT, RunStatus.STOPPING),
    (RunStatus.RUNNING, Event.EXITED_OK, RunStatus.COMPLETED),
    (RunStatus.RUNNING, Event.EXITED_ERROR, RunStatus.FAILED),
    (RunStatus.STOPPING, Event.STOPPED, RunStatus.CANCELLED),
    (RunStatus.STOPPING, Event.TIMED_OUT, RunStatus.TIMED_OUT),
    (RunStatus.STOPPING, Event.RETRY_STOP, RunStatus.STOPPING),
    (RunStatus.STOPPING, Event.LOST, RunStatus.FAILED),
])
def test_legal_moves(state: RunStatus, event: Event, expected: RunStatus) -> None:
    assert next_status(state, event) is expected


def test_a_stopped_run_never_ends_failed() -> None:
    assert next_status(RunStatus.STOPPING, Event.STOPPED) is RunStatus.CANCELLED
    with pytest.raises(TransitionError):
        next_status(RunStatus.STOPPING, Event.EXITED_ERROR)


@pytest.mark.parametrize("state", sorted(TERMINAL))
@pytest.mark.parametrize("event", list(Event))
def test_terminal_states_have_no_way_out(state: RunStatus, event: Event) -> None:
    with pytest.raises(TransitionError, match="terminal"):
        next_status(state, event)


def test_illegal_move_names_the_legal_events() -> None:
    with pytest.raises(TransitionError) as info:
        next_status(RunStatus.RUNNING, Event.STOPPED)
    assert "a running run cannot take event 'stopped'" in str(info.value)
    assert "exited_ok" in str(info.value)


def test_every_state_is_covered_and_terminal_is_exactly_the_unreachable_sources() -> None:
    sources = {s for s, _ in TRANSITIONS}
    assert sources | TERMINAL == set(RunStatus)
    assert not sources & TERMINAL
    assert str(RunStatus.TIMED_OUT) == "timed_out" and RunStatus.CANCELLED.terminal
