"""A run's log folder: durable files written by the agent, and the kernel's live tail.

The agent writes straight into ``stdout.log`` and ``stderr.log`` (opened ``O_APPEND`` by
its guard; in pty mode the guard copies the terminal into ``stdout.log``), so every byte
survives a kernel SIGKILL and no pipe can fill or hold the run open. What was sent to its
stdin is kept in ``stdin.log``. ``order.idx`` says how the three interleave, as records
``o<n>`` / ``e<n>`` / ``i<n>`` (the next ``n`` bytes of that stream): the guard writes the
agent's (it watches the files with inotify; see ``_proc/order.py``), the kernel writes the
input's, and without a guard the kernel's tail writes them all, at its own granularity.
The kernel writes an input record before the agent can read the input, as
``i<n>:<stdout size>:<stderr size>``: the input comes after what the agent had written by
then, even when the guard describes those bytes later; ``u<n>`` takes back the last ``n``
bytes of input that could not be sent (a full pipe).
Bytes no record describes (a crash) come last, stdout first.

The live tail reads new bytes each tick, but decodes and keeps only the last
``FEED_WINDOW`` bytes of a tick, so a flood costs the kernel a bounded amount of Python
work and memory. Reading a tail from the log (``tail()``) reads a bounded amount from the
end, so a 200 MB line without a newline costs no more than a short one.
"""

from __future__ import annotations

import codecs
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from . import _terminal, _units

STREAMS = ("stdout", "stderr")  # what the agent writes
ALL_STREAMS = ("stdout", "stderr", "stdin")  # and what was sent to it
_TAG = {"stdout": b"o", "stderr": b"e", "stdin": b"i"}
_STREAM_OF = {v: k for k, v in _TAG.items()}
_UNSENT = b"u"  # the last n bytes of input were not sent after all
COUNT_BLOCK = 256 << 10  # bytes per read while counting lines: short GIL holds
FEED_WINDOW = 64 << 10  # at most this much of each tick's new text is decoded
MAX_TAIL_LINES = 250  # display lines kept per run: the widget shows 200
MAX_LINE_CHARS = 4000
TAIL_BYTES_PER_LINE = 4096  # tail(n) reads at most n times this from the end (and at least 64 KiB)
UNRECORDED_LAG = 0.3  # seconds the tail waits for the guard to record bytes before showing them anyway
QUIET_CHECK = 2.0  # seconds between full checks of a guarded run whose order index has not grown


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
    def stdin(self) -> Path:
        return self.dir / "stdin.log"

    @property
    def order(self) -> Path:
        return self.dir / "order.idx"

    def path(self, stream: str) -> Path:
        return {"stdout": self.stdout, "stderr": self.stderr, "stdin": self.stdin}[stream]

    def create(self) -> LogFiles:
        """Create the folder (0700) and empty log files (0600); agent output holds secrets."""
        self.dir.parent.mkdir(mode=0o700, exist_ok=True)
        self.dir.mkdir(mode=0o700, exist_ok=False)
        for path in (self.stdout, self.stderr, self.order):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return self

    def adopt(self) -> LogFiles:
        """Empty the mirrored log (stdout.log, order.idx) of a run whose source is kept
        elsewhere in full (a Ray job's log), so that it can be mirrored again from the start."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for path in (self.stdout, self.stderr, self.order):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        return self

    def chunks(self, streams: tuple[str, ...] = STREAMS) -> Iterator[tuple[str, int, int]]:
        """(stream, offset, length) of ``streams`` in the order written, then any remainder.

        An input record may carry the sizes stdout and stderr had when it was sent
        (``i<n>:<out>:<err>``): what the agent had written by then comes before it, even if
        the guard has not described those bytes yet."""
        offsets = dict.fromkeys(ALL_STREAMS, 0)  # bytes yielded (or skipped) per stream
        described = dict.fromkeys(ALL_STREAMS, 0)  # bytes covered by records per stream
        sizes = {s: _file_size(self.path(s)) for s in ALL_STREAMS}
        try:
            records = self.order.read_bytes().split(b"\n")
        except OSError:
            records = []

        def upto(stream: str, end: int) -> Iterator[tuple[str, int, int]]:
            end = min(end, sizes[stream])
            if end > offsets[stream]:
                if stream in streams:
                    yield stream, offsets[stream], end - offsets[stream]
                offsets[stream] = end

        parsed: list[tuple[str, list[int]]] = []  # (stream, [n, marks…]); u<n> shortens its input
        last_input = -1
        for rec in records:
            fields = rec[1:].split(b":")
            if not rec or not all(f.isdigit() for f in fields):
                continue
            if rec[:1] == _UNSENT and last_input >= 0:
                parsed[last_input][1][0] -= int(fields[0])
            elif rec[:1] in _STREAM_OF:
                parsed.append((_STREAM_OF[rec[:1]], [int(f) for f in fields]))
                if rec[:1] == _TAG["stdin"]:
                    last_input = len(parsed) - 1
        for stream, values in parsed:
            if stream == "stdin" and len(values) == 3:
                yield from upto("stdout", values[1])
                yield from upto("stderr", values[2])
            described[stream] += values[0]
            yield from upto(stream, described[stream])
        for stream in streams:
            yield from upto(stream, sizes[stream])

    def read_bytes(self, stream: str = "both") -> bytes:
        """All bytes of one stream, of the agent's two interleaved ("both"), or of all three ("all")."""
        if stream in ALL_STREAMS:
            return read_range(self.path(stream), 0, None)
        chosen = STREAMS if stream == "both" else ALL_STREAMS
        return b"".join(read_range(self.path(s), off, n) for s, off, n in self.chunks(chosen))

    def output(self, stream: str = "both") -> str:
        """What the agent wrote, decoded (``stream``: both, stdout, stderr; stdin or all for
        what was sent to it too)."""
        if stream not in ("both", "all", *ALL_STREAMS):
            raise ValueError(f"stream must be 'both', 'stdout', 'stderr', 'stdin' or 'all', not {stream!r}")
        return self.read_bytes(stream).decode("utf-8", "replace")

    def tail_chunks(self, n: int, streams: tuple[str, ...] = STREAMS) -> list[tuple[str, bytes]]:
        """The bytes of about the last ``n`` lines, as (stream, data), oldest first.

        Reads at most ``max(64 KiB, n * TAIL_BYTES_PER_LINE)`` bytes from the end: a huge
        line is cut, never read whole (the caller marks the cut)."""
        budget = max(64 << 10, n * TAIL_BYTES_PER_LINE)
        picked: list[tuple[str, bytes]] = []
        newlines = 0
        for stream, off, length in reversed(list(self.chunks(streams))):
            take = min(length, budget)
            data = read_range(self.path(stream), off + length - take, take)
            picked.append((stream, data))
            newlines += data.count(b"\n")
            budget -= take
            if newlines > n or budget <= 0:
                break
        picked.reverse()
        return picked

    def tail(self, n: int) -> str:
        """The last ``n`` lines of the interleaved output, ``\\r`` progress collapsed to what a
        terminal shows, colours kept; a line cut for size says so. Reads only the end."""
        if n <= 0:
            return ""
        data = b"".join(d for _, d in self.tail_chunks(n))
        text = data.decode("utf-8", "replace")
        ends = text.endswith("\n")
        raw = text.split("\n")
        if ends:
            raw.pop()
        raw = raw[-n:]
        lines = [_terminal.collapse_cr(line).rstrip("\r") for line in raw]
        total = sum(_file_size(self.path(s)) for s in STREAMS)
        cut = lines and len(data) < total and len(lines) < n and not data.startswith(b"\n")
        if cut and "\r" not in raw[0].rstrip("\r"):  # after a \r, a terminal shows none of the cut part
            lines[0] = f"… [{total - len(data):,} earlier bytes of this line in the log] " + lines[0]
        for i, line in enumerate(lines):
            lines[i] = _terminal.clip(line, 4 * MAX_LINE_CHARS)
        return "\n".join(lines) + ("\n" if lines and ends else "")


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
        self._pending = dict.fromkeys(ALL_STREAMS, "")
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
            for stream in ALL_STREAMS:
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
    """Reads a running agent's logs for display, in the order written. Supervisor thread only.

    ``writes_order``: no guard records the order (the direct backend), so this tail writes
    ``order.idx`` itself, one record per stream per tick. Otherwise it follows the guard's
    records, and shows bytes no record has described after ``UNRECORDED_LAG`` anyway (a
    stopped guard must not freeze the display). Each poll decodes at most ``FEED_WINDOW``
    new bytes, the end of what was written since the last poll.
    """

    def __init__(self, files: LogFiles, buffer: TailBuffer, *, writes_order: bool) -> None:
        self.files = files
        self.buffer = buffer
        self.writes_order = writes_order
        self._fds: dict[str, int] = {}
        self._fed = dict.fromkeys(ALL_STREAMS, 0)  # bytes of each stream handed to the buffer
        self._recorded = dict.fromkeys(ALL_STREAMS, 0)  # bytes the order records describe
        self._seen = dict.fromkeys(STREAMS, 0)  # the agent's bytes so far (for counts)
        self._waiting: dict[str, float] = {}  # stream -> when unrecorded bytes were first seen
        self._decoders = {s: codecs.getincrementaldecoder("utf-8")("replace") for s in ALL_STREAMS}
        self._order = os.open(files.order, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        self._order_pos = 0
        self._order_rest = b""
        self._full_check = 0.0  # when the log files themselves were last looked at
        self.closed = False

    @property
    def bytes(self) -> int:
        return sum(self._seen.values())

    def _fd(self, stream: str) -> int | None:
        fd = self._fds.get(stream)
        if fd is None:
            try:
                fd = self._fds[stream] = os.open(self.files.path(stream), os.O_RDONLY)
            except OSError:
                return None
        return fd

    def _size(self, stream: str) -> int:
        fd = self._fd(stream)
        return os.fstat(fd).st_size if fd is not None else 0

    def _records(self, skip: tuple[str, ...] = ()) -> list[tuple[str, int]]:
        """New order records, as (stream, offset the stream reaches); ``skip``: streams whose
        records this tail wrote itself (already counted)."""
        size = os.fstat(self._order).st_size
        if size <= self._order_pos:
            return []
        data = self._order_rest + os.pread(self._order, size - self._order_pos, self._order_pos)
        self._order_pos = size
        *complete, self._order_rest = data.split(b"\n")
        out = []
        for rec in complete:
            stream = _STREAM_OF.get(rec[:1])
            fields = rec[1:].split(b":")
            if not all(f.isdigit() for f in fields):
                continue
            if rec[:1] == _UNSENT:
                self._recorded["stdin"] -= int(fields[0])
                self._fed["stdin"] = min(self._fed["stdin"], self._recorded["stdin"])
                continue
            if stream is None or stream in skip:
                continue
            if stream == "stdin" and len(fields) == 3:  # what the agent wrote before the input
                out += [("stdout", int(fields[1])), ("stderr", int(fields[2]))]
            self._recorded[stream] += int(fields[0])
            out.append((stream, self._recorded[stream]))
        return out

    def poll(self, final: bool = False) -> bool:
        """Read whatever is new, in order; return True if the agent wrote anything.

        With a guard, its order index grows within milliseconds of any write (the first
        bytes after a pause at once), so a tick that finds the index unchanged looks no
        further, and the log files are checked only every ``QUIET_CHECK`` seconds (bytes a
        stopped guard never describes still show within about that): an idle run costs
        one fstat per tick."""
        if self.closed:
            return False
        now = time.monotonic()
        if (not final and not self.writes_order and not self._waiting and now - self._full_check < QUIET_CHECK
                and os.fstat(self._order).st_size <= self._order_pos):
            return False
        self._full_check = now
        sizes = {s: self._size(s) for s in STREAMS}
        # stdin.log exists once something was sent, and every send is recorded first
        sizes["stdin"] = self._size("stdin") if self._recorded["stdin"] or "stdin" in self._fds else 0
        grew = any(sizes[s] > self._seen[s] for s in STREAMS)
        for s in STREAMS:
            self._seen[s] = sizes[s]
        own: list[tuple[str, int]] = []
        if self.writes_order:
            for s in STREAMS:  # one record per stream per tick: the kernel's granularity
                if sizes[s] > self._recorded[s]:
                    os.write(self._order, b"%s%d\n" % (_TAG[s], sizes[s] - self._recorded[s]))
                    self._recorded[s] = sizes[s]
                    own.append((s, sizes[s]))
        new = self._records(skip=STREAMS if self.writes_order else ())
        chunks = [(s, upto) for s, upto in new + own if upto > self._fed[s]]
        for s in ALL_STREAMS:  # bytes no record describes: wait a moment for the guard, then show them
            ahead = sizes[s] > max(self._fed[s], self._recorded[s], *(u for c, u in chunks if c == s))
            if not ahead:
                self._waiting.pop(s, None)
            elif final or now - self._waiting.setdefault(s, now) >= UNRECORDED_LAG:
                chunks.append((s, sizes[s]))
                self._waiting.pop(s, None)
        self._feed(chunks)
        return grew

    def _feed(self, chunks: list[tuple[str, int]]) -> None:
        spans = []
        for stream, upto in chunks:
            if upto > self._fed[stream]:
                spans.append((stream, self._fed[stream], upto))
                self._fed[stream] = upto
        # Keep the newest FEED_WINDOW bytes; what is skipped is marked once (the log has it all).
        budget, keep, skipped = FEED_WINDOW, [], 0
        for stream, start, end in reversed(spans):
            take = min(end - start, budget)
            skipped += end - start - take
            if take:
                keep.append((stream, end - take, end, take < end - start))
            budget -= take
        if skipped:
            self.buffer.note_omitted(spans[0][0], skipped)
        for stream, start, end, cut in reversed(keep):
            fd = self._fd(stream)
            if fd is None:
                continue
            data = os.pread(fd, end - start, start)
            if cut:
                # Start the shown text at a line boundary (a \r one too: a progress bar's
                # latest state must survive). A window with no boundary is the end of one huge line.
                cuts = [i for i in (data.find(b"\n"), data.find(b"\r")) if i >= 0]
                data = data[min(cuts) + 1 :] if cuts else data
                self._decoders[stream].reset()
            text = self._decoders[stream].decode(data)
            if text:
                self.buffer.feed(stream, text)

    def close(self) -> None:
        """Final read (everything, in order), then release the descriptors."""
        if self.closed:
            return
        self.poll(final=True)
        for stream in ALL_STREAMS:
            rest = self._decoders[stream].decode(b"", final=True)
            if rest:
                self.buffer.feed(stream, rest)
        for fd in self._fds.values():
            os.close(fd)
        os.close(self._order)
        self.closed = True
