"""Which CLI printed an event: recognition of a stream from its first JSON events.

Each CLI's first events have a shape no other CLI prints:

- Claude Code: ``{"type": "system", "subtype": "init", ...}``, or an ``assistant``,
  ``user``, ``result``, ``system``, ``stream_event`` or ``rate_limit_event`` line that
  carries a ``session_id``.
- Codex: ``thread.started``, ``turn.*``, ``item.*`` or ``request_user_input`` (dotted
  types are Codex's alone).
- Gemini CLI: every event has a ``timestamp``; ``init`` with ``session_id``, or
  ``message``, ``tool_use``, ``tool_result``, ``result``, ``error`` with a timestamp and
  without a ``session_id`` (which every Claude line has).

A bare ``{"type": "error", "message": …}`` could be Codex or anything else, so it decides
nothing; the reader keeps such lines until a recognisable event arrives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_CLAUDE_TYPES = frozenset({"assistant", "user", "result", "system", "stream_event", "rate_limit_event"})
_CODEX_TYPES = frozenset(
    {
        "thread.started",
        "turn.started",
        "turn.completed",
        "turn.failed",
        "item.started",
        "item.updated",
        "item.completed",
        "item.plan.delta",
        "request_user_input",
    }
)
_GEMINI_TYPES = frozenset({"message", "tool_use", "tool_result", "result", "error"})

DETECT_LINES = 20  # lines read before a stream with no recognisable event is plain text
DETECT_BYTES = 64 << 10  # likewise, in bytes


def recognise(event: Mapping[str, Any]) -> str | None:
    """Return "claude", "codex" or "gemini" if ``event`` is one only that CLI prints."""
    kind = event.get("type")
    if not isinstance(kind, str):
        return None
    if kind in _CODEX_TYPES:
        return "codex"
    if kind == "system" and event.get("subtype") == "init":
        return "claude"
    has_time = isinstance(event.get("timestamp"), str)
    if kind == "init" and has_time and isinstance(event.get("session_id"), str):
        return "gemini"
    if kind in _CLAUDE_TYPES and isinstance(event.get("session_id"), str):
        return "claude"
    if kind in _GEMINI_TYPES and has_time:
        return "gemini"
    return None
