"""Live statistics of a run's process tree: process count, CPU %, RSS."""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class TreeStats:
    procs: int
    cpu_percent: float  # summed over the tree; 100 = one core
    rss: int  # bytes

    def __str__(self) -> str:
        mb = self.rss / 1e6
        size = f"{mb:.0f} MB" if mb >= 10 else f"{mb:.1f} MB"
        return f"{self.procs} proc{'s' if self.procs != 1 else ''} · {self.cpu_percent:.0f}% CPU · {size}"


class TreeSampler:
    """Samples one tree repeatedly; CPU % is measured between consecutive samples."""

    def __init__(self) -> None:
        self._last: dict[tuple[int, float], float] = {}  # (pid, create_time) -> cpu seconds
        self._t = 0.0

    def sample(self, procs: list[psutil.Process]) -> TreeStats:
        now = time.monotonic()
        seen: dict[tuple[int, float], float] = {}
        cpu = 0.0
        rss = 0
        count = 0
        for proc in procs:
            try:
                with proc.oneshot():
                    if proc.status() == psutil.STATUS_ZOMBIE:
                        continue
                    times = proc.cpu_times()
                    used = times.user + times.system
                    rss += proc.memory_info().rss
                    ident = (proc.pid, proc.create_time())
            except psutil.Error:
                continue
            count += 1
            seen[ident] = used
            if ident in self._last and self._t:
                cpu += max(0.0, used - self._last[ident])
        span = now - self._t if self._t else 0.0
        self._last, self._t = seen, now
        return TreeStats(count, 100.0 * cpu / span if span > 0 else 0.0, rss)
