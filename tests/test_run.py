"""A run's life: natural ends, timeouts, stop results, listeners, waits, rerun."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import runstop_nb

from .helpers import alive, cookie_alive, wait_for


def test_exit_zero_completes_and_nonzero_fails() -> None:
    ok = runstop_nb.start(["sh", "-c", "echo fine"])
    bad = runstop_nb.start(["sh", "-c", "echo oops >&2; exit 3"])
    assert ok.wait(10) == "completed" and ok.returncode == 0
    assert bad.wait(10) == "failed" and bad.returncode == 3
    assert bad.output() == "oops\n"
    assert ok.ended_at is not None and ok.ended_at >= ok.started_at


def test_stop_is_idempotent_and_signals_nothing_the_second_time() -> None:
    run = runstop_nb.start(["sleep", "1000"])
    first = run.stop(grace=1)
    second = run.stop()
    assert first.stopped and first.reason == "stopped" and first.prior_status == "running"
    assert not second.stopped and second.reason == "already_terminal" and second.signalled == 0
    assert second.prior_status == "cancelled"
    with pytest.raises(AttributeError):
        first.stopped = False  # type: ignore[misc]  # frozen


def test_timeout_stops_with_the_same_ladder_and_ends_timed_out() -> None:
    run = runstop_nb.start(["bash", "-c", "trap '' TERM; sleep 1000 & sleep 1000"], timeout=1.0, grace=0.2)
    assert run.wait(10) == "timed_out"
    assert run.last_stop is not None and run.last_stop.escalated
    assert cookie_alive(run.spec.cookie) == []


def test_listener_that_raises_is_ignored_and_others_still_called() -> None:
    seen: list[str] = []

    def bad(run: runstop_nb.Run) -> None:
        raise RuntimeError("listener bug")

    run = runstop_nb.start(["sleep", "1000"])
    run.add_listener(bad)
    remove = run.add_listener(lambda r: seen.append(r.status))
    assert run.stop(grace=0.5).stopped
    assert seen[-1] == "cancelled" and "stopping" in seen
    remove()
    assert cookie_alive(run.spec.cookie) == []


def test_wait_returns_status_at_timeout() -> None:
    run = runstop_nb.start(["sleep", "1000"])
    t0 = time.monotonic()
    assert run.wait(0.3) == "running"
    assert time.monotonic() - t0 < 2


def test_wait_async_does_not_block_the_loop() -> None:
    run = runstop_nb.start(["sh", "-c", "sleep 0.3"])

    async def main() -> tuple[str, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.ensure_future(ticker())
        status = await run.wait_async(10)
        task.cancel()
        return status, ticks

    # A fresh thread: IPython tests earlier in the session may leave this thread's loop marked running.
    box: list[tuple[str, int]] = []
    worker = threading.Thread(target=lambda: box.append(asyncio.run(main())))
    worker.start()
    worker.join(30)
    status, ticks = box[0]
    assert status == "completed"
    assert ticks >= 5, "the event loop kept running while waiting"


def test_retry_after_a_failed_stop() -> None:
    """A stop that raises leaves the run stopping; the retry stops it for real."""
    run = runstop_nb.start(["sleep", "1000"])
    agent = run._agent
    assert agent is not None
    real = agent.terminate
    calls = []

    def failing_once(grace: float):  # type: ignore[no-untyped-def]
        calls.append(grace)
        if len(calls) == 1:
            raise OSError("injected: the first stop fails")
        return real(grace)

    agent.terminate = failing_once  # type: ignore[method-assign]
    first = run.stop(grace=0.5)
    assert not first.stopped and first.reason == "error" and "injected" in (first.error or "")
    assert run.status == "stopping" and alive(run.pid or 0)
    second = run.stop(grace=0.5)
    assert second.stopped and second.prior_status == "stopping"
    assert run.status == "cancelled"


def test_rerun_starts_the_same_command_as_a_new_run() -> None:
    run = runstop_nb.start(["sh", "-c", "echo again"], name="rr")
    run.wait(10)
    new = run.rerun()
    assert new.id != run.id and new.name == "rr" and new.argv == run.argv
    assert new.wait(10) == "completed" and new.output() == "again\n"


def test_repr_states_the_run() -> None:
    run = runstop_nb.start(["sleep", "1000"], name="reviewer")
    assert repr(run) == f"<Run 'reviewer' running pid={run.pid} 00:00>"
    run.stop(grace=0.5)
    assert repr(run).startswith("<Run 'reviewer' cancelled pid=")


def test_elapsed_and_counts() -> None:
    run = runstop_nb.start(["sh", "-c", "printf 'a\\nb\\nc'"])
    run.wait(10)
    assert run.lines == 3 and run.bytes == 5
    assert run.tail(2) == "b\nc"
    wait_for(lambda: run.elapsed > 0, 1, "elapsed")
