"""One inotify fd for many files, and the supervisor's ticks for runs that are quiet."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from runstop_nb._supervisor import QUIET_TICK, TICK, Supervisor
from runstop_nb._watches import Watches

from .helpers import wait_for

linux = pytest.mark.skipif(sys.platform != "linux", reason="inotify is Linux's")


@linux
def test_changed_reports_the_keys_of_written_files_once(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.touch()
    b.touch()
    w = Watches()
    assert w.add("A", str(a)) and w.add("B", str(b))
    assert w.changed() == set()
    with open(a, "ab") as f:
        f.write(b"x")
    assert w.changed() == {"A"}
    assert w.changed() == set(), "events are drained"
    w.remove("A")
    with open(a, "ab") as f:
        f.write(b"y")
    assert w.changed() == set() and w.keys() == {"B"}


def test_a_file_that_cannot_be_watched_says_so(tmp_path: Path) -> None:
    assert not Watches().add("gone", str(tmp_path / "missing"))


@linux
def test_a_quiet_watched_ticker_ticks_once_a_second_and_at_once_after_a_write(tmp_path: Path) -> None:
    sup = Supervisor()
    path = tmp_path / "order.idx"
    path.touch()
    calls: list[float] = []
    lock = threading.Lock()

    def tick() -> None:
        with lock:
            calls.append(time.monotonic())

    sup.add_ticker("k", tick, wake_on=str(path))
    try:
        time.sleep(2 * QUIET_TICK + 0.2)
        with lock:
            quiet = len(calls)
        assert 1 <= quiet <= 4, f"{quiet} ticks in {2 * QUIET_TICK:.0f} s of silence (every tick: ~40)"
        with open(path, "ab") as f:
            f.write(b"o5\n")
        written = time.monotonic()
        wait_for(lambda: any(t > written for t in calls), 5, "a tick after the write")
        with lock:
            first = min(t for t in calls if t > written)
        assert first - written < QUIET_TICK, "the write was not waited out to the next quiet tick"
    finally:
        sup.remove_ticker("k")
        assert TICK < QUIET_TICK
