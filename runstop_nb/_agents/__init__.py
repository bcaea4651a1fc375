"""Agent CLIs' JSON-lines event streams, read into a live summary and renderable cards.

Pure Python and stdlib only; nothing here imports the rest of runstop_nb, and nothing
does I/O: the caller feeds the bytes an agent wrote to stdout.

Layout, one concern per module:

- ``summary``  the records: Format, Usage, AgentSummary, Card (imports nothing of ours)
- ``excerpt``  bounded text from event values (cut, first line, JSON as text)
- ``board``    the bounded card list and the uncut texts kept for "show all"
- ``detect``   which CLI printed an event
- ``tools``    how Claude's and Gemini's tool calls look on a card
- ``parser``   what the three parsers share; ``claude``, ``codex``, ``gemini``: one each,
  and ``claude_system`` for Claude's system, rate-limit and control lines
- ``reader``   StreamReader: bytes in, summary and cards out
- ``resume``   each CLI's resume command, and Claude's stdin user message
"""

from __future__ import annotations

from .reader import StreamReader
from .resume import resume_argv, user_message_line
from .summary import BODY_CHARS, AgentSummary, Card, CardKind, CardStatus, Format, Usage

__all__ = [
    "BODY_CHARS",
    "AgentSummary",
    "Card",
    "CardKind",
    "CardStatus",
    "Format",
    "StreamReader",
    "Usage",
    "resume_argv",
    "user_message_line",
]
