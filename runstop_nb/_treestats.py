"""Live statistics of runs' process trees (process count, CPU %, RSS), one pass for all runs.

Views do not sample trees themselves: one thread makes one pass per second over every
watched run (``run.member_pids()`` and one ``/proc/PID/stat`` read per process), and
calls a watcher back only when what it would show changed, so a sleeping agent costs no
message at all. A tree whose figures stayed the same for a while is looked at less often
(every ``SLOW_EVERY`` passes) until they change again: fifty sleeping agents then cost
the kernel almost nothing.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._kernelstate import kernel_state
from ._proc import procfs
from ._threads import forever
from ._units import plural, size

PASS = 1.0  # seconds between passes
STEADY = 5  # unchanged passes after which a tree is sampled less often
SLOW_EVERY = 10  # passes between samples of a steady tree
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class TreeStats:
    procs: int
    cpu_percent: float  # summed over the tree; 100 = one core
    rss: int  # bytes

    def __str__(self) -> str:
        return f"{plural(self.procs, 'process', 'processes')} · {self.cpu_percent:.0f}% CPU · {size(self.rss)}"


class TreeSampler:
    """Samples one tree repeatedly; CPU % is measured between consecutive samples."""

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock or time.monotonic
        self._last: dict[tuple[int, int], int] = {}  # (pid, start) -> cpu ticks
        self._t = 0.0

    def sample(self, pids: list[int]) -> TreeStats:
        now = self._clock()
        seen: dict[tuple[int, int], int] = {}
        ticks = rss = count = 0
        for pid in pids:
            st = procfs.stat(pid)
            if st is None or st.dead:
                continue
            count += 1
            rss += st.rss_pages * PAGE
            ident = (pid, st.start)
            seen[ident] = st.cpu_ticks
            if ident in self._last and self._t:
                ticks += max(0, st.cpu_ticks - self._last[ident])
        span = now - self._t if self._t else 0.0
        self._last, self._t = seen, now
        return TreeStats(count, 100.0 * ticks / TICKS / span if span > 0 else 0.0, rss)


class _Watch:
    def __init__(self, run: Any, on_change: Callable[[str], None]) -> None:
        self.run = run
        self.on_change = on_change
        self.sampler = TreeSampler()
        self.shown = ""
        self.same = 0  # passes in a row whose figures did not change


class StatsService:
    """One thread: every ``PASS`` seconds, sample each watched live run's tree."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watches: dict[object, _Watch] = {}
        self._wake = threading.Event()
        self._passes = 0
        self._thread = forever(self._pass, "runstop-treestats")

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def watch(self, key: object, run: Any, on_change: Callable[[str], None]) -> None:
        """Call ``on_change(text)`` whenever ``run``'s tree stats read differently (from this thread)."""
        with self._lock:
            self._watches[key] = _Watch(run, on_change)
        self._wake.set()

    def unwatch(self, key: object) -> None:
        with self._lock:
            self._watches.pop(key, None)

    def watching(self) -> int:
        with self._lock:
            return len(self._watches)

    def _pass(self) -> None:
        with self._lock:
            watches = list(self._watches.items())
        if not watches:
            self._wake.wait()
            self._wake.clear()
            return
        self._passes += 1
        for key, watch in watches:
            run = watch.run
            if run.done:
                self.unwatch(key)
                continue
            if watch.same >= STEADY and self._passes % SLOW_EVERY:
                continue
            try:
                text = str(watch.sampler.sample(run.member_pids()))
            except Exception:
                continue  # a run that ends mid-sample; the next pass sees it done
            if text == watch.shown:
                watch.same += 1
                continue
            watch.same, watch.shown = 0, text
            try:
                watch.on_change(text)
            except Exception:
                self.unwatch(key)
        time.sleep(PASS)


def stats_service() -> StatsService:
    """This kernel's tree-stats thread (started on first use, again if it died)."""
    return kernel_state().service("treestats", StatsService, lambda s: s.alive)
