"""The renderer: one thread that sends views what changed, at most 10 times a second each.

Widget traffic is the expensive part of streaming (docs/platform.md: 2,000
``append_stdout`` calls sent 217 MB), so views never send on output events. Instead an
event (new output, a change of status, new tree stats, a click) *marks* a view, and this
thread asks each marked view to ``refresh()``; a view sends state only for what changed
since its last frame, and holds output back until ``FRAME`` seconds after its last
output update (it marks itself again meanwhile). A run costs at most 10 output updates
per second, each bounded by the tail window, however fast the agent writes, and a view
of a run where nothing happens costs nothing: the clock ticks in the browser.

One thread, not the kernel's event loop: asyncio tasks get no ticks while a synchronous
cell runs (docs/platform.md), and a thread keeps streaming through ``%agent_run --wait``.
Widgets are written from this thread and from click handlers on the main thread, always
under ``ui_lock()``, since ipywidgets' own bookkeeping is not thread-safe.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from ._kernelstate import kernel_state
from ._threads import forever

log = logging.getLogger("runstop_nb")
FRAME = 0.1  # seconds between frames: at most 10 widget updates per second per run
SWEEP = 5.0  # every view is refreshed at least this often, in case an event was missed
PROBE = 0.5  # seconds between two looks at probed versions (output that came without an event)
MAX_FAILURES = 5  # consecutive failed refreshes before a view is dropped


class Refreshable(Protocol):
    def refresh(self) -> bool:
        """Send what changed; return False once there is nothing left to send, ever."""
        ...


class Renderer:
    def __init__(self) -> None:
        self._items: list[Refreshable] = []
        self._dirty: dict[int, Refreshable] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._failures: dict[int, int] = {}
        self._probes: dict[int, tuple[Refreshable, Callable[[], int], list[int]]] = {}
        self._swept = self._probed = time.monotonic()
        self._thread = forever(self._frame, "runstop-renderer")

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def add(self, item: Refreshable) -> None:
        """Keep ``item`` refreshed from now on (and refresh it at once)."""
        with self._lock:
            if item not in self._items:
                self._items.append(item)
            self._dirty[id(item)] = item
        self._wake.set()

    def mark(self, item: Refreshable) -> None:
        """Something ``item`` shows changed: refresh it in the next frame."""
        with self._lock:
            if item in self._items:
                self._dirty[id(item)] = item
        self._wake.set()

    def discard(self, item: Refreshable) -> None:
        with self._lock:
            if item in self._items:
                self._items.remove(item)
            self._dirty.pop(id(item), None)
            self._probes.pop(id(item), None)

    def probe(self, item: Refreshable, version: Callable[[], int]) -> None:
        """Also mark ``item`` whenever ``version()`` changes, checked every PROBE seconds.

        A safety net for output that arrives without an event (a flood's skipped bytes):
        one cheap call per live view twice a second, and no message unless it changed."""
        with self._lock:
            self._probes[id(item)] = (item, version, [version()])
        self._wake.set()

    def unprobe(self, item: Refreshable) -> None:
        with self._lock:
            self._probes.pop(id(item), None)

    def poke(self) -> None:
        """Wake the thread (kept for callers that only know something happened)."""
        self._wake.set()

    def _frame(self) -> None:
        """Refresh every marked item once (every item at each sweep), then wait for the next frame."""
        t0 = time.monotonic()
        with self._lock:
            probes = list(self._probes.values()) if t0 - self._probed >= PROBE else []
            if probes:
                self._probed = t0
            for item, version, last in probes:
                try:
                    now = version()
                except Exception:
                    continue
                if now != last[0]:
                    last[0] = now
                    self._dirty[id(item)] = item
            probing = bool(self._probes)
            if t0 - self._swept >= SWEEP:
                self._swept = t0
                due = list(self._items)
            else:
                due = list(self._dirty.values())
            self._dirty.clear()
            idle = not self._items
        for item in due:
            try:
                keep = item.refresh()
                self._failures.pop(id(item), None)
            except Exception:
                # A reload can make one frame fail; only a view that keeps failing is dropped.
                n = self._failures[id(item)] = self._failures.get(id(item), 0) + 1
                log.exception("runstop_nb: a view failed to refresh (%d time(s))", n)
                keep = n < MAX_FAILURES
                if keep:
                    self.mark(item)
            if not keep:
                self.discard(item)
                self._failures.pop(id(item), None)
        with self._lock:
            pending = bool(self._dirty)
        if pending:
            # Marked during this frame (output a view held back for its rate, or new events):
            # pace the next frame, so a busy kernel gets at most about 1 / FRAME frames a second.
            left = FRAME - (time.monotonic() - t0)
            if left > 0:
                time.sleep(left)
            return
        # Nothing left to do: sleep until something is marked (or a probe or sweep is due),
        # then draw at once. A run's first line shows without waiting out a frame; each view
        # still sends output at most once per FRAME (its refresh holds the rest back).
        self._wake.wait(None if idle else PROBE if probing else SWEEP)
        self._wake.clear()


def ui_lock() -> threading.RLock:
    """The kernel-wide lock every widget write holds (kept across module reloads)."""
    lock: threading.RLock = kernel_state().service("ui_lock", threading.RLock)
    return lock


def renderer() -> Renderer:
    """This kernel's renderer thread (started on first use, again if it died)."""
    return kernel_state().service("renderer", Renderer, lambda r: r.alive)
