"""Tree stats: one pass for all watched runs, and a call back only when the figures change."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial

import psutil
import pytest

from runstop_nb import _treestats
from runstop_nb._treestats import StatsService, TreeSampler, TreeStats

from .helpers import kill_pids, wait_for


def test_stats_read_in_words() -> None:
    assert str(TreeStats(1, 0.0, 417)) == "1 process · 0% CPU · 417 B"
    assert str(TreeStats(3, 12.4, 12_300_000)) == "3 processes · 12% CPU · 12.3 MB"


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "1000"])
    try:
        # until it has exec'd: before, its memory is the forked Python's, and the figures change
        wait_for(lambda: psutil.Process(proc.pid).cmdline() == ["sleep", "1000"], 5, "sleep to exec")
        yield proc
    finally:
        kill_pids([proc.pid])
        proc.wait()


def test_a_sampler_counts_live_processes_and_their_memory(sleeper: subprocess.Popen[bytes]) -> None:
    stats = TreeSampler().sample([sleeper.pid, 999_999_999])
    assert stats.procs == 1 and stats.rss > 0, "a missing pid is not counted"


def test_cpu_is_measured_between_samples() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        sampler = TreeSampler()
        assert sampler.sample([busy.pid]).cpu_percent == 0.0, "one sample has no span"
        wait_for(lambda: sampler.sample([busy.pid]).cpu_percent > 0, 10, "CPU use between two samples")
    finally:
        kill_pids([busy.pid])
        busy.wait()


class Watched:
    """The two members a watched run needs."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.done = False

    def member_pids(self) -> list[int]:
        return list(self.pids)


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch) -> StatsService:
    monkeypatch.setattr(_treestats, "PASS", 0.02)  # passes every 20 ms for the test
    return StatsService()


def test_a_watcher_hears_only_changes(service: StatsService, sleeper: subprocess.Popen[bytes]) -> None:
    heard: list[str] = []
    run = Watched([sleeper.pid])
    service.watch("k", run, heard.append)
    wait_for(lambda: heard, 5, "the first figures")
    passes = service._passes
    wait_for(lambda: service._passes >= passes + 3, 5, "three more passes")  # a fresh process's RSS settles
    settled, passes = len(heard), service._passes
    wait_for(lambda: service._passes >= passes + 10, 5, "ten more passes")
    assert len(heard) == settled and heard[-1].startswith("1 process · 0% CPU"), "unchanged figures are not sent again"
    second = subprocess.Popen(["sleep", "1000"])
    try:
        run.pids.append(second.pid)
        wait_for(lambda: len(heard) > settled, 5, "the figures after a new process")
        assert heard[settled].startswith("2 processes")
    finally:
        kill_pids([second.pid])
        second.wait()


def test_an_ended_run_is_no_longer_watched(service: StatsService) -> None:
    run = Watched([])
    calls = threading.Event()
    service.watch("gone", run, lambda _text: calls.set())
    wait_for(calls.is_set, 5, "the first figures")
    run.done = True
    wait_for(lambda: service.watching() == 0, 5, "the run to be dropped")


def test_one_thread_watches_many_runs(service: StatsService, sleeper: subprocess.Popen[bytes]) -> None:
    heard: dict[int, list[str]] = {}
    for i in range(20):
        service.watch(i, Watched([sleeper.pid]), partial(lambda i, text: heard.setdefault(i, []).append(text), i))
    wait_for(lambda: len(heard) == 20, 5, "every run's figures")
    assert service.watching() == 20
