"""The renderer: one thread that repaints every displayed run widget, at most 10 times a second.

Widget traffic is the expensive part of streaming (docs/platform.md: 2,000 ``append_stdout``
calls sent 217 MB), so widgets never update on output events. Instead this thread asks
each widget to ``refresh()`` every ``FRAME`` seconds; a widget sends state only for
what changed since its last frame. So a run costs at most 10 output updates per second,
each bounded by the widget's tail window, however fast the agent writes.

One thread, not the kernel's event loop: asyncio tasks get no ticks while a synchronous
cell runs (docs/platform.md), and a thread keeps streaming through ``%agent_run --wait``.
Widgets are written from this thread and from click handlers on the main thread, always
under ``UI_LOCK``, since ipywidgets' own bookkeeping is not thread-safe.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from ._kernelstate import kernel_state
from ._threads import forever

log = logging.getLogger("runstop_nb")
FRAME = 0.1  # seconds between frames: at most 10 widget updates per second per run
MAX_FAILURES = 5  # consecutive failed refreshes before a widget is dropped


class Refreshable(Protocol):
    def refresh(self) -> bool:
        """Repaint what changed; return False once there is nothing left to repaint."""
        ...


class Renderer:
    def __init__(self) -> None:
        self._items: list[Refreshable] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._failures: dict[int, int] = {}
        self._poke = threading.Event()
        self._thread = forever(self._frame, "runstop-renderer")

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def add(self, item: Refreshable) -> None:
        with self._lock:
            if item not in self._items:
                self._items.append(item)
        self._wake.set()

    def discard(self, item: Refreshable) -> None:
        with self._lock:
            if item in self._items:
                self._items.remove(item)

    def _frame(self) -> None:
        """Refresh every item once, then sleep out the rest of the frame."""
        with self._lock:
            items = list(self._items)
        if not items:
            self._wake.wait()
            self._wake.clear()
            return
        t0 = time.monotonic()
        for item in items:
            try:
                keep = item.refresh()
                self._failures.pop(id(item), None)
            except Exception:
                # A reload can make one frame fail; only a widget that keeps failing is dropped.
                n = self._failures[id(item)] = self._failures.get(id(item), 0) + 1
                log.exception("runstop_nb: a widget failed to refresh (%d time(s))", n)
                keep = n < MAX_FAILURES
            if not keep:
                self.discard(item)
                self._failures.pop(id(item), None)
        # Sleep until the next frame, or until new output pokes us (the first line of a run
        # shows at once; each widget still limits its own output updates to one per FRAME).
        self._poke.wait(max(0.0, FRAME - (time.monotonic() - t0)))
        self._poke.clear()

    def poke(self) -> None:
        """New output arrived: render before the frame is over."""
        self._poke.set()


def ui_lock() -> threading.RLock:
    """The kernel-wide lock every widget write holds (kept across module reloads)."""
    lock: threading.RLock = kernel_state().service("ui_lock", threading.RLock)
    return lock


def renderer() -> Renderer:
    """This kernel's renderer thread (started on first use, again if it died)."""
    return kernel_state().service("renderer", Renderer, lambda r: r.alive)
