"""A run's log folder: durable files written by the agent, and the kernel's live tail.

The agent writes straight into ``stdout.log`` and ``stderr.log`` (opened ``O_APPEND`` by
the guard), so every byte survives a kernel SIGKILL and no pipe can fill or hold the run
open. The kernel only reads. It records the order in which it saw chunks of each stream
in ``order.idx`` (``o123``/``e45`` lines), so ``output()`` interleaves the two streams as
they appeared, at the poller's granularity; bytes written after the last record (say, in
a kernel crash) are appended stdout first.

The live tail reads new bytes each tick. It counts every line, but decodes and keeps only
the last ``FEED_WINDOW`` bytes of a tick, so a flood costs the kernel a bounded amount
of Python work and memory.
"""

from __future__ import annotations

import codecs
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from . import _terminal, _units

STREAMS = ("stdout", "stderr")
_TAG = {"stdout": b"o", "stderr": b"e"}
COUNT_BLOCK = 256 << 10  # bytes per read while counting lines: short GIL holds
FEED_WINDOW = 64 << 10  # at most this much of each tick's new text is decoded
MAX_TAIL_LINES = 250  # display lines kept per run: the widget shows 200
MAX_LINE_CHARS = 4000


@dataclass(frozen=True)
class LogFiles:
    """Paths of one run's log folder."""

    dir: Path

    @property
    def stdout(self) -> Path:
        return self.dir / "stdout.log"

    @property
    def stderr(self) -> Path:
        return self.dir / "stderr.log"

    @property
    def order(self) -> Path:
        return self.dir / "order.idx"

    def path(self, stream: str) -> Path:
        return self.stdout if stream == "stdout" else self.stderr

    def create(self) -> LogFiles:
        """Create the folder (0700) and empty log files (0600); agent output holds secrets."""
        self.dir.parent.mkdir(mode=0o700, exist_ok=True)
        self.dir.mkdir(mode=0o700, exist_ok=False)
        for path in (self.stdout, self.stderr, self.order):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return self

    def chunks(self) -> Iterator[tuple[str, int, int]]:
        """(stream, offset, length) in the order the kernel saw them, then any remainder."""
        offsets = {"stdout": 0, "stderr": 0}
        sizes = {s: _file_size(self.path(s)) for s in STREAMS}
        try:
            records = self.order.read_bytes().split(b"\n")
        except OSError:
            records = []
        for rec in records:
            if len(rec) < 2 or rec[:1] not in (b"o", b"e") or not rec[1:].isdigit():
                continue
            stream = "stdout" if rec[:1] == b"o" else "stderr"
            n = min(int(rec[1:]), sizes[stream] - offsets[stream])
            if n > 0:
                yield stream, offsets[stream], n
                offsets[stream] += n
        for stream in STREAMS:
            if sizes[stream] > offsets[stream]:
                yield stream, offsets[stream], sizes[stream] - offsets[stream]

    def read_bytes(self, stream: str = "both") -> bytes:
        """All bytes of one stream, or of both interleaved as they appeared."""
        if stream != "both":
            return read_range(self.path(stream), 0, None)
        return b"".join(read_range(self.path(s), off, n) for s, off, n in self.chunks())

    def output(self, stream: str = "both") -> str:
        """What the agent wrote, decoded (``stream``: both, stdout or stderr)."""
        if stream not in ("both", *STREAMS):
            raise ValueError(f"stream must be 'both', 'stdout' or 'stderr', not {stream!r}")
        return self.read_bytes(stream).decode("utf-8", "replace")

    def tail(self, n: int) -> str:
        """The last ``n`` lines of the interleaved output, reading only the end of the files."""
        if n <= 0:
            return ""
        parts: list[bytes] = []
        newlines = 0
        for stream, off, length in reversed(list(self.chunks())):
            data = read_range(self.path(stream), off, length)
            parts.append(data)
            newlines += data.count(b"\n")
            if newlines > n:
                break
        text = b"".join(reversed(parts)).decode("utf-8", "replace")
        lines = text.splitlines()[-n:]
        return "\n".join(lines) + ("\n" if lines and text.endswith("\n") else "")


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def read_range(path: Path, offset: int, length: int | None) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read() if length is None else f.read(length)
    except OSError:
        return b""


class TailBuffer:
    """The last lines of a run, cleaned for display, with stream tags. Thread-safe.

    ``version`` grows on every change, so a renderer can skip work when nothing is new.
    """

    def __init__(self, max_lines: int = MAX_TAIL_LINES) -> None:
        self._lock = threading.Lock()
        self._lines: deque[tuple[str, str]] = deque(maxlen=max_lines)
        self._pending = {"stdout": "", "stderr": ""}
        self.version = 0
        self.omitted = 0  # bytes never decoded for display (floods)
        self.on_change: Callable[[], None] | None = None  # set by a widget: wakes its renderer

    def feed(self, stream: str, text: str) -> None:
        with self._lock:
            text = (self._pending[stream] + text).replace("\r\n", "\n")
            *complete, rest = text.split("\n")
            maxlen = self._lines.maxlen or len(complete)
            for line in complete[-maxlen:]:  # cleaning lines that would scroll out is wasted work
                self._lines.append((stream, _terminal.clip(_terminal.clean(line), MAX_LINE_CHARS)))
            rest = _terminal.collapse_cr(rest)
            if len(rest) > 4 * MAX_LINE_CHARS:  # a huge line without newline: keep its end
                rest = "…" + rest[-2 * MAX_LINE_CHARS :]
            self._pending[stream] = rest
            self.version += 1
        if self.on_change is not None:
            self.on_change()

    def note_omitted(self, stream: str, nbytes: int) -> None:
        """A flood wrote more than one tick shows: mark the gap (the log has it all)."""
        with self._lock:
            self._pending[stream] = ""
            self.omitted += nbytes
            self._lines.append((stream, f"\x1b[2m… {_units.size(nbytes)} not shown here (the log has it all) …\x1b[0m"))
            self.version += 1

    def lines(self, n: int | None = None) -> list[tuple[str, str]]:
        """The last ``n`` display lines, partial lines included, as (stream, text)."""
        with self._lock:
            out = list(self._lines)
            for stream in STREAMS:
                if self._pending[stream]:
                    out.append((stream, _terminal.clip(_terminal.clean(self._pending[stream]), MAX_LINE_CHARS)))
        return out if n is None else out[-n:]

    def shrink(self, max_lines: int) -> None:
        """Keep fewer lines once a run has ended (the log still has everything)."""
        with self._lock:
            self._lines = deque(list(self._lines)[-max_lines:], maxlen=max_lines)


class LineCounter:
    """Counts the lines of a run's logs incrementally, on demand, from any thread.

    Counting is kept off the 10 Hz tail: under a flood, counting every byte there held the
    GIL for most of the supervisor's time and starved the kernel (benchmark P6). Here each
    call counts only what was written since the last one, in blocks small enough to let
    other threads run in between.
    """

    def __init__(self, files: LogFiles) -> None:
        self.files = files
        self._lock = threading.Lock()
        self._done = {s: 0 for s in STREAMS}  # bytes already counted
        self._newlines = {s: 0 for s in STREAMS}
        self._last = {s: b"\n" for s in STREAMS}  # the last byte counted

    def count(self) -> int:
        """Lines written so far, counting an unterminated last line."""
        with self._lock:
            total = 0
            for stream in STREAMS:
                self._advance(stream)
                total += self._newlines[stream] + (0 if self._last[stream] == b"\n" else 1)
            return total

    def _advance(self, stream: str) -> None:
        try:
            fd = os.open(self.files.path(stream), os.O_RDONLY)
        except OSError:
            return
        try:
            size = os.fstat(fd).st_size
            pos = self._done[stream]
            while pos < size:
                block = os.pread(fd, min(COUNT_BLOCK, size - pos), pos)
                if not block:
                    break
                self._newlines[stream] += block.count(b"\n")
                self._last[stream] = block[-1:]
                pos += len(block)
            self._done[stream] = pos
        finally:
            os.close(fd)


class LiveTail:
    """Reads a running agent's logs for display. Driven by the supervisor thread only.

    Each poll reads at most ``FEED_WINDOW`` new bytes per stream, the end of what was
    written since the last poll, so a flood costs a bounded amount of work per tick.
    """

    def __init__(self, files: LogFiles, buffer: TailBuffer) -> None:
        self.files = files
        self.buffer = buffer
        self._fds = {s: os.open(files.path(s), os.O_RDONLY) for s in STREAMS}
        self._offsets = {s: 0 for s in STREAMS}
        self._decoders = {s: codecs.getincrementaldecoder("utf-8")("replace") for s in STREAMS}
        self._order = open(files.order, "ab", buffering=0)  # noqa: SIM115 - closed in close()
        self.closed = False

    @property
    def bytes(self) -> int:
        return sum(self._offsets.values())

    def poll(self) -> bool:
        """Read whatever is new (its last FEED_WINDOW bytes); return True if anything was."""
        if self.closed:
            return False
        got = False
        for stream in STREAMS:
            fd = self._fds[stream]
            size = os.fstat(fd).st_size
            start = self._offsets[stream]
            if size <= start:
                continue
            got = True
            feed_from = max(start, size - FEED_WINDOW)
            data = os.pread(fd, size - feed_from, feed_from)
            self._offsets[stream] = size
            self._order.write(b"%s%d\n" % (_TAG[stream], size - start))
            if feed_from > start:
                # Start the shown text at a line boundary (a \r one too: a progress bar's
                # latest state must survive), after what is not shown. A window with no
                # boundary at all is the end of one huge line: keep it.
                cuts = [i for i in (data.find(b"\n"), data.find(b"\r")) if i >= 0]
                cut = min(cuts) + 1 if cuts else 0
                data = data[cut:]
                self._decoders[stream].reset()
                self.buffer.note_omitted(stream, feed_from - start + cut)
            text = self._decoders[stream].decode(data)
            if text:
                self.buffer.feed(stream, text)
        return got

    def close(self) -> None:
        """Final read, then release the descriptors."""
        if self.closed:
            return
        self.poll()
        for stream in STREAMS:
            rest = self._decoders[stream].decode(b"", final=True)
            if rest:
                self.buffer.feed(stream, rest)
            os.close(self._fds[stream])
        self._order.close()
        self.closed = True
