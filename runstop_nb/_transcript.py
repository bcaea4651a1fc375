"""An agent's transcript: its stdout, parsed as it is written, into a summary and cards.

Claude Code, Codex and Gemini print one JSON event per line when scripted
(``_agents`` parses them). The transcript feeds every byte of ``stdout.log`` to one
``StreamReader``, in order, never the display tail's window (which skips bytes under a
flood). Reading is bounded per poll (``POLL_BYTES``), so a fast agent is caught up over
a few ticks instead of stalling one. Once the stream is recognised as plain text, it is
no longer read at all: a plain run costs nothing here.

The log is the truth and stays byte-exact; a summary can always be rebuilt from it
(``rebuild``), which is how a past run's cards are shown.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

from ._agents import AgentSummary, Card, Format, StreamReader

POLL_BYTES = 256 << 10  # read at most this much per poll: short GIL holds (a fast agent is caught up over ticks)
REBUILD_TAIL = 8 << 20  # a past run's cards come from at most the last 8 MB of its stdout
FORMATS: tuple[Format, ...] = ("auto", "claude", "codex", "gemini", "text")


class Transcript:
    """One run's stdout, parsed incrementally. Reading is serialised (the supervisor's
    tick polls while the run's end may close it from another thread); the read methods
    are thread-safe (the reader locks)."""

    def __init__(self, path: Path, fmt: Format = "auto") -> None:
        self.path = path
        self.reader = StreamReader(fmt)
        self.active = fmt != "text"
        self._offset = 0
        self._version = -1
        self.behind = False  # the last read stopped at POLL_BYTES: more is waiting
        self._read_lock = threading.Lock()

    @property
    def kind(self) -> str:
        """claude, codex, gemini, text, or auto while undecided."""
        return self.reader.kind or ("text" if not self.active else "auto")

    def _read(self) -> int:
        """Feed up to POLL_BYTES of new output; return how many bytes were read."""
        with self._read_lock:
            return self._read_locked()

    def _read_locked(self) -> int:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read(POLL_BYTES)
        except OSError:
            return 0
        self.behind = len(data) == POLL_BYTES
        if data:
            self._offset += len(data)
            self.reader.feed(data)
        if self.reader.kind == "text":
            self.active = False  # plain output: never read again
        return len(data)

    def poll(self) -> bool:
        """Parse what was written since the last poll (bounded); True if anything changed."""
        if not self.active:
            return False
        self._read()
        changed = self.reader.version != self._version
        self._version = self.reader.version
        return changed

    def close(self) -> None:
        """The run ended: parse the rest, then let a last unterminated line count."""
        while self.active and self._read():
            pass
        self.reader.close()
        self.active = False

    def summary(self) -> AgentSummary | None:
        return self.reader.summary()

    def cards(self, n: int | None = None) -> Sequence[Card]:
        cards = self.reader.cards()
        return cards if n is None else cards[-n:]

    def card_text(self, card_id: str) -> str | None:
        body = self.reader.full_body(card_id)
        detail = self.reader.full_detail(card_id)
        if body is None and detail is None:
            return None
        return "\n\n".join(t for t in (body, detail) if t)


def rebuild(path: Path, fmt: Format) -> Transcript:
    """A finished run's transcript, from (the end of) its log."""
    t = Transcript(path, fmt)
    try:
        size = os.stat(path).st_size
    except OSError:
        size = 0
    if size > REBUILD_TAIL and fmt != "auto":
        with open(path, "rb") as f:  # start on a line boundary near the end
            f.seek(size - REBUILD_TAIL)
            skip = f.readline()
        t._offset = size - REBUILD_TAIL + len(skip)
    t.close()
    return t
