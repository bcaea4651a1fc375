"""The supervisor: one long-lived thread per kernel that spawns the warden and drives runs.

Why one thread, not the kernel's asyncio loop or a pool:

* helper processes are spawned only here, by a thread that lives as long as the kernel
  (a child's ``PR_SET_PDEATHSIG`` fires when the *thread* that spawned it exits:
  docs/platform.md), and every guard's and the warden's socket is watched in one place;
* asyncio tasks get no ticks while a synchronous cell runs, while this thread keeps
  tailing logs and firing timeouts through any cell;
* one ``select`` over every socket and one inotify fd, ticking runs that wrote (at most
  10 Hz) and quiet ones every 2 s, is cheaper than a thread per run.

Work that may block (a stop ladder's grace) never runs here; runs hand it to a thread.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from ._kernelstate import kernel_state
from ._threads import forever
from ._watches import Watches

log = logging.getLogger("runstop_nb")
T = TypeVar("T")
TICK = 0.1  # seconds: tail and timeout resolution, and at most 10 widget updates/s
FAST_TICK = 0.01  # seconds: while a new run has not written yet, so its first line shows at once
QUIET_TICK = 2.0  # seconds between ticks of a watched ticker whose file was not written


class Supervisor:
    def __init__(self) -> None:
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._calls: list[tuple[Callable[[], Any], Future[Any]]] = []
        self._tickers: dict[object, Callable[[], None]] = {}
        self._watches = Watches()  # tickers that only need a tick when their file was written
        if self._watches.fd >= 0:  # a write to a watched file wakes the loop (ticks stay >= TICK apart)
            self._sel.register(self._watches.fd, selectors.EVENT_READ, self._on_written)
        self._written: set[object] = set()  # keys whose file was written since the last tick
        self._every: dict[object, list[float]] = {}  # key -> [interval, next due] for slow tickers
        self._next_quiet = time.monotonic()
        self._last_tick = 0.0
        self._hurried: dict[object, float] = {}  # key -> monotonic deadline of fast ticking
        self._children: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()
        self.pid = os.getpid()
        self._next_tick = time.monotonic()
        self._thread = forever(self._step, "runstop-supervisor")

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and self.pid == os.getpid()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except (BlockingIOError, OSError):
            pass  # already awake

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Run ``fn`` on the supervisor thread and return its result (or raise its error)."""
        if threading.current_thread() is self._thread:
            return fn()
        fut: Future[T] = Future()
        with self._lock:
            self._calls.append((fn, fut))
        self._wake()
        return fut.result(timeout)

    def watch(self, sock: socket.socket, on_readable: Callable[[], None]) -> None:
        """Call ``on_readable`` (on this thread) whenever ``sock`` is readable. Call from here."""
        self._sel.register(sock, selectors.EVENT_READ, on_readable)

    def unwatch(self, sock: socket.socket) -> None:
        try:
            self._sel.unregister(sock)
        except (KeyError, ValueError):
            pass

    def add_ticker(self, key: object, fn: Callable[[], None], *, wake_on: str | None = None,
                   every: float | None = None) -> None:
        """Call ``fn`` about every TICK seconds until ``remove_ticker(key)``.

        With ``wake_on`` (a file), only in the ticks after that file was written, and every
        QUIET_TICK seconds anyway (and every tick while hurried); if the file cannot be
        watched, every tick. With ``every``, about every ``every`` seconds. When every
        ticker is one of those, the loop sleeps until one is due: an idle kernel's
        supervisor wakes a few times a second at most, not ten."""
        if wake_on is not None:
            self._watches.add(key, wake_on)
        with self._lock:
            self._tickers[key] = fn
            if every is not None:
                self._every[key] = [every, time.monotonic() + every]
            self._next_tick = time.monotonic()
        self._wake()

    def remove_ticker(self, key: object) -> None:
        with self._lock:
            self._tickers.pop(key, None)
            self._hurried.pop(key, None)
            self._every.pop(key, None)
        self._watches.remove(key)

    def hurry(self, key: object, seconds: float) -> None:
        """Tick every FAST_TICK for up to ``seconds`` (or until ``relax(key)``)."""
        with self._lock:
            now = time.monotonic()
            self._hurried[key] = now + seconds
            self._next_tick = min(self._next_tick, now + FAST_TICK)
        self._wake()

    def relax(self, key: object) -> None:
        with self._lock:
            self._hurried.pop(key, None)

    def reap_later(self, proc: subprocess.Popen[bytes]) -> None:
        """Wait for a child (a guard) without blocking: polled every tick until it exits."""
        with self._lock:
            self._children.append(proc)

    def _step(self) -> None:
        """One turn: handle ready sockets and queued calls; every TICK, run the tickers."""
        for key, _ in self._sel.select(max(0.0, self._next_tick - time.monotonic())):
            if key.data is None:
                self._run_calls()
            else:
                _guarded(key.data)
        if time.monotonic() >= self._next_tick:
            self._tick()

    def _on_written(self) -> None:
        """A watched file was written: note whose, and tick soon (never twice within TICK)."""
        self._written |= self._watches.changed()
        self._next_tick = min(self._next_tick, self._last_tick + TICK)

    def _tick(self) -> None:
        now = time.monotonic()
        written, self._written = self._written | self._watches.changed(), set()
        quiet_due = now >= self._next_quiet
        if quiet_due:
            self._next_quiet = now + QUIET_TICK
        watched = self._watches.keys()
        with self._lock:
            due, plain = [], False
            for key, fn in self._tickers.items():
                slow = self._every.get(key)
                if slow is not None:
                    if now >= slow[1]:
                        slow[1] = now + slow[0]
                        due.append(fn)
                elif key not in watched:
                    plain = True
                    due.append(fn)
                elif quiet_due or key in written or key in self._hurried:
                    due.append(fn)
            self._children = [c for c in self._children if c.poll() is None]
        for fn in due:
            _guarded(fn)
        now = time.monotonic()
        self._last_tick = now
        with self._lock:
            self._hurried = {k: t for k, t in self._hurried.items() if t > now}
            if self._hurried:
                nxt = now + FAST_TICK
            elif plain or self._children:
                nxt = now + TICK
            else:  # only watched and slow tickers: sleep until one is due (a write wakes us sooner)
                nxt = max(now + TICK, min([self._next_quiet, *(v[1] for v in self._every.values())]))
            self._next_tick = min(self._next_tick, nxt) if self._next_tick > now else nxt

    def _run_calls(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass
        with self._lock:
            calls, self._calls = self._calls, []
        for fn, fut in calls:
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as e:
                fut.set_exception(e)


def _guarded(fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception:
        log.exception("runstop_nb: a supervisor callback raised; the run carries on")


def supervisor() -> Supervisor:
    """This kernel's supervisor (started on first use, again if its thread died)."""
    return kernel_state().service("supervisor", Supervisor, lambda s: s.alive)
