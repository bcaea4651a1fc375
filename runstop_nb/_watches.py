"""Which of many files were written since the last look: one inotify fd for all of them.

The supervisor ticks every run ten times a second. A run whose guard records the order of
its output (``order.idx`` grows within milliseconds of any write) only needs its tick
when that file changed, so the supervisor watches every such file here, drains the events
once per tick, and ticks the idle runs only every two seconds. 200 silent agents then cost the
kernel about nothing (before: one fstat and a Python call per run, 2,000 a second).

Linux only (inotify through ctypes); elsewhere, or when a watch cannot be added (the
user's watch limit), ``add`` returns False and the caller keeps ticking as before.
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys
import threading

_IN_MODIFY = 0x2
_IN_IGNORED = 0x8000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name)


class Watches:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._libc: ctypes.CDLL | None = None
        self.fd = -1
        self._keys: dict[int, object] = {}  # watch descriptor -> key
        self._wds: dict[object, int] = {}
        if sys.platform != "linux":
            return
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        except (OSError, AttributeError):
            return
        if fd >= 0:
            self._libc, self.fd = libc, fd

    def add(self, key: object, path: str) -> bool:
        """Report writes to ``path`` as ``key``; False if it cannot be watched."""
        if self._libc is None:
            return False
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(path), _IN_MODIFY)
        if wd < 0:
            return False
        with self._lock:
            self._keys[wd] = key
            self._wds[key] = wd
        return True

    def remove(self, key: object) -> None:
        with self._lock:
            wd = self._wds.pop(key, None)
            if wd is not None:
                self._keys.pop(wd, None)
        if wd is not None and self._libc is not None:
            self._libc.inotify_rm_watch(self.fd, wd)

    def keys(self) -> set[object]:
        """Every key watched now (a snapshot)."""
        with self._lock:
            return set(self._wds)

    def changed(self) -> set[object]:
        """The keys whose file was written since the last call (never blocks)."""
        if self._libc is None:
            return set()
        out: set[object] = set()
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except (BlockingIOError, InterruptedError):
                break
            if not data:
                break
            at = 0
            with self._lock:
                while at + _EVENT.size <= len(data):
                    wd, mask, _, length = _EVENT.unpack_from(data, at)
                    at += _EVENT.size + length
                    key = self._keys.get(wd)
                    if key is not None and not mask & _IN_IGNORED:
                        out.add(key)
        return out
