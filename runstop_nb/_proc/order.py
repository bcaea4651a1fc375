"""The order in which an agent wrote its two streams, recorded by its guard.

An agent writes straight into ``stdout.log`` and ``stderr.log`` (so every byte is on disk
even if the kernel is SIGKILLed). What two files cannot say is the interleaving: which of
"note: checkpoint 30" (stderr) and "done" (stdout) came first. The guard watches both files
with inotify and wakes within microseconds of each write, so it knows which file grew
when, and appends that to ``order.idx`` as records ``o<n>`` / ``e<n>`` / ``i<n>``: the
next ``n`` bytes of stdout, stderr, or of what was sent to the agent's stdin.

A record is written when the stream switches, and the open chunk is flushed at most every
``FLUSH_EVERY`` seconds (immediately for the first bytes after a pause, so a new line
shows at once), which keeps the index small under a flood. Writes closer together than
the guard's wake-up (microseconds, more on a loaded machine) may be merged. In pty mode
there is one stream and the guard writes it itself, so the order is exact.
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys
import time

FLUSH_EVERY = 0.05  # seconds an open chunk may stay unrecorded
TAGS = {"stdout": b"o", "stderr": b"e", "stdin": b"i"}
_IN_MODIFY = 0x2
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_EVENT = struct.Struct("iIII")


def _inotify(paths: list[str]) -> tuple[int, dict[int, int]] | None:
    """An inotify fd watching ``paths`` for writes, and watch descriptor -> index; None if unavailable."""
    if sys.platform != "linux":
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            return None
        wds = {}
        for i, path in enumerate(paths):
            wd = libc.inotify_add_watch(fd, os.fsencode(path), _IN_MODIFY)
            if wd < 0:
                os.close(fd)
                return None
            wds[wd] = i
        return fd, wds
    except (OSError, AttributeError):
        return None


class OrderRecorder:
    """Appends stream-order records for one run's logs; driven by its guard's select loop."""

    def __init__(self, order_path: str, stdout_path: str, stderr_path: str, *, watch: bool = True) -> None:
        self._fd = os.open(order_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._paths = {"stdout": stdout_path, "stderr": stderr_path}
        self._recorded = {"stdout": 0, "stderr": 0}  # bytes already described by records
        self._seen = {"stdout": 0, "stderr": 0}  # size at the stream's latest write
        self._open: str | None = None  # the stream whose chunk is not recorded yet
        self._since = 0.0  # when the open chunk was last flushed
        made = _inotify([stdout_path, stderr_path]) if watch else None
        self.fd: int | None = made[0] if made is not None else None
        self._wds: dict[int, int] = made[1] if made is not None else {}

    def _size(self, stream: str) -> int:
        try:
            return os.stat(self._paths[stream]).st_size
        except OSError:
            return self._seen[stream]

    def _write(self, stream: str, upto: int) -> None:
        n = upto - self._recorded[stream]
        if n > 0:
            os.write(self._fd, TAGS[stream] + b"%d\n" % n)
            self._recorded[stream] = upto

    def note(self, stream: str, size: int) -> None:
        """``stream`` has grown to ``size`` bytes (its latest write is the newest of all)."""
        if size <= self._seen[stream]:
            return
        now = time.monotonic()
        if self._open is not None and self._open != stream:
            self._write(self._open, self._seen[self._open])  # the other stream's chunk ends here
        elif self._open is None:
            self._since = 0.0  # first bytes after a pause: recorded at once
        self._open = stream
        self._seen[stream] = size
        if now - self._since >= FLUSH_EVERY:
            self._write(stream, size)
            self._since = now

    def on_events(self) -> None:
        """Read pending inotify events (the fd was readable) and note each write in order."""
        if self.fd is None:
            return
        try:
            data = os.read(self.fd, 1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        pos, order = 0, list[str]()
        while pos + _EVENT.size <= len(data):
            wd, _mask, _cookie, length = _EVENT.unpack_from(data, pos)
            pos += _EVENT.size + length
            if wd in self._wds:
                stream = ("stdout", "stderr")[self._wds[wd]]
                if not order or order[-1] != stream:
                    order.append(stream)
        for stream in order:
            self.note(stream, self._size(stream))

    def timeout(self) -> float | None:
        """Seconds until the open chunk must be flushed, or None when nothing is pending."""
        if self._open is None or self._recorded[self._open] >= self._seen[self._open]:
            return None
        return max(0.0, FLUSH_EVERY - (time.monotonic() - self._since))

    def flush(self) -> None:
        """Record the open chunk now (its flush time came)."""
        if self._open is not None:
            self._write(self._open, self._seen[self._open])
            self._since = time.monotonic()

    def close(self) -> None:
        """The agent is gone: record every byte (what no event described comes last, stdout first)."""
        self.on_events()
        self.flush()
        for stream in ("stdout", "stderr"):
            self._write(stream, self._size(stream))
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        os.close(self._fd)
