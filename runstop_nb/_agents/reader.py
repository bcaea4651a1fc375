"""The stream reader: an agent's raw stdout bytes in, a live summary and cards out.

Feed it every byte the agent writes to stdout, in order, in chunks of any size; call
:meth:`StreamReader.close` when the stream ends so a last line without a newline counts.
It never raises on what the agent prints: a line that is not a JSON event becomes a
``raw`` card, and consecutive raw lines share a card (up to ``RAW_LINES`` lines or
``BODY_CHARS`` characters), so a flood of text costs a bounded number of cards.

With ``fmt="auto"`` the format is decided by the first recognisable JSON event (see
detect.py). Lines that are not JSON before it (a banner) show as raw cards and do not
defeat recognition; JSON lines that decide nothing are held until the decision. If
nothing is recognised within ``DETECT_LINES`` lines or ``DETECT_BYTES`` bytes, the
stream is plain text for good. A fixed format never auto-detects.

A line longer than ``max_line`` bytes is not buffered whole: its head becomes a raw card
and the rest is counted and dropped. Work per line is bounded beyond ``json.loads``; the
reader is thread-safe (one lock), so one thread may feed while another reads.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from .board import CardBoard, TextRun
from .claude import ClaudeParser
from .codex import CodexParser
from .detect import DETECT_BYTES, DETECT_LINES, recognise
from .excerpt import cut
from .gemini import GeminiParser
from .parser import Parser
from .summary import BODY_CHARS, FORMATS, AgentSummary, Card, Format

RAW_LINES = 100  # lines per raw card at most
_HEAD_BYTES = BODY_CHARS * 4 + 4  # bytes kept of an over-long line: enough for its card
_PARSERS: dict[str, type[Parser]] = {"claude": ClaudeParser, "codex": CodexParser, "gemini": GeminiParser}


class StreamReader:
    """Incremental reader of one agent's stdout: feed bytes, read the summary and cards.

    ``kind`` is "claude", "codex" or "gemini" once recognised, "text" once given up (or
    when fixed), None while undecided. ``version`` grows on every change, so a UI can
    poll it cheaply and redraw only when it moved.
    """

    def __init__(self, fmt: Format = "auto", *, max_cards: int = 200, max_line: int = 16 << 20) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown stream format {fmt!r}; use one of {', '.join(FORMATS)}")
        self.fmt = fmt
        self.kind: str | None = None if fmt == "auto" else fmt
        self.version = 0
        self.max_line = max(int(max_line), 1)
        self._board = CardBoard(max_cards)
        self._parser: Parser | None = _PARSERS[fmt](self._board) if fmt in _PARSERS else None
        self._lock = threading.Lock()
        self._partial = bytearray()  # the unterminated line so far
        self._dropped = 0  # bytes of an over-long line beyond its kept head
        self._held: list[str] = []  # JSON lines that decided nothing yet (auto only)
        self._seen_lines = 0
        self._seen_bytes = 0
        self._raw_id: str | None = None  # the raw card that further raw lines join
        self._raw: TextRun | None = None
        self._raw_lines = 0

    # -- input ------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Read the next bytes of the stream; any chunking, partial lines, invalid UTF-8."""
        if not data:
            return
        with self._lock:
            start, end = 0, len(data)
            while start < end:
                newline = data.find(b"\n", start)
                if newline < 0:
                    self._take(data, start, end)
                    break
                if not self._partial and not self._dropped and newline - start <= self.max_line:
                    self._finish(data[start:newline], 0)
                else:
                    self._take(data, start, newline)
                    self._finish_partial()
                start = newline + 1

    def close(self) -> None:
        """End the stream: a last unterminated line counts; an undecided stream is text."""
        with self._lock:
            if self._partial or self._dropped:
                self._finish_partial()
            if self.kind is None:
                self._give_up()
                self.version += 1

    def _take(self, data: bytes, start: int, stop: int) -> None:
        """Add ``data[start:stop]`` to the current line, keeping at most ``max_line`` bytes."""
        if self._dropped:
            self._dropped += stop - start
            return
        room = self.max_line - len(self._partial)
        if stop - start <= room:
            self._partial += data[start:stop]
            return
        self._partial += data[start : start + room]
        self._dropped = stop - start - room + max(len(self._partial) - _HEAD_BYTES, 0)
        del self._partial[_HEAD_BYTES:]  # only its head is shown: do not hold max_line bytes

    def _finish_partial(self) -> None:
        raw, dropped = bytes(self._partial), self._dropped
        self._partial.clear()
        self._dropped = 0
        self._finish(raw, dropped)

    def _finish(self, raw: bytes, dropped: int) -> None:
        """Handle one whole line (``dropped`` bytes of it beyond ``raw`` were not kept)."""
        try:
            changed = self._overlong(raw, len(raw) + dropped) if dropped else self._line(raw)
        except Exception as exc:  # a parser bug must not break the stream: show the line
            self._raw_line(f"[unreadable event: {type(exc).__name__}: {exc}] " + _decode(raw[:_HEAD_BYTES]))
            changed = True
        if changed:
            self.version += 1

    # -- lines ------------------------------------------------------------------

    def _line(self, raw: bytes) -> bool:
        """Handle one line; return False if nothing changed."""
        text = _decode(raw)
        if self.kind == "text":
            return self._raw_line(text)
        if not text.strip():
            return False
        event = _event(text)
        if self._parser is None:
            return self._detect(text, event, len(raw))
        if event is None:
            return self._raw_line(text)
        return self._parser.handle(event)

    def _detect(self, text: str, event: dict[str, Any] | None, size: int) -> bool:
        kind = recognise(event) if event is not None else None
        if event is not None and kind is not None:
            self.kind = kind
            parser = self._parser = _PARSERS[kind](self._board)
            held, self._held = self._held, []
            for line in held:
                self._line(line.encode())
            parser.handle(event)
            return True
        changed = True
        if event is None:
            changed = self._raw_line(text)
        else:
            self._held.append(text)
        self._seen_lines += 1
        self._seen_bytes += size
        if self._seen_lines >= DETECT_LINES or self._seen_bytes >= DETECT_BYTES:
            self._give_up()
            changed = True
        return changed

    def _give_up(self) -> None:
        self.kind = "text"
        held, self._held = self._held, []
        for line in held:
            self._raw_line(line)

    def _overlong(self, head: bytes, size: int) -> bool:
        text = _decode(head[:_HEAD_BYTES])
        if self.kind is None:
            self._seen_lines += 1
            self._seen_bytes += size
            if self._seen_bytes >= DETECT_BYTES:
                self._give_up()
        body = cut(text, BODY_CHARS - 40) + f"\n[line of {size:,} bytes cut]"
        self._board.put(self._board.new_id("raw"), "raw", "Over-long line", body, "info")
        return True

    def _raw_line(self, text: str) -> bool:
        """Show a line that is not an event, joining the raw card shown last if it can."""
        board = self._board
        run, card_id = self._raw, self._raw_id
        if (
            run is not None
            and card_id is not None
            and card_id == board.last_id
            and self._raw_lines < RAW_LINES
            and run.size + len(text) < BODY_CHARS
        ):
            run.add("\n")
        elif not text.strip():
            return False  # a blank line does not start a card
        else:
            run, card_id = TextRun(), board.new_id("raw")
            self._raw, self._raw_id, self._raw_lines = run, card_id, 0
        run.add(text)
        self._raw_lines += 1
        board.put_run(card_id, "raw", "Output", run, "info")
        return True

    # -- output -----------------------------------------------------------------

    def summary(self) -> AgentSummary | None:
        """Return the run's summary so far; None for a plain-text or undecided stream."""
        with self._lock:
            return None if self._parser is None else self._parser.summary()

    def cards(self) -> list[Card]:
        """Return the newest ``max_cards`` cards, oldest first."""
        with self._lock:
            return self._board.cards()

    def full_body(self, card_id: str) -> str | None:
        """Return the uncut body of a card still held, or None (see board.py for bounds)."""
        with self._lock:
            return self._board.full_body(card_id)

    def full_detail(self, card_id: str) -> str | None:
        """Return the uncut detail of a card still held, or None."""
        with self._lock:
            return self._board.full_detail(card_id)


def _decode(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    return text[:-1] if text.endswith("\r") else text


def _event(text: str) -> dict[str, Any] | None:
    """Return the line as a JSON object, or None if it is not one."""
    if not text.lstrip().startswith("{"):
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
