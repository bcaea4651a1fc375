"""The vocabulary of agent streams: formats, cards, token usage and a run's summary.

This module must not import any other module of the package, so every other module (the
parsers, the widget, the history) can import it without an import cycle. The records are
frozen: a reader hands out new ones on every change, and a UI may keep old ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Format = Literal["auto", "claude", "codex", "gemini", "text"]
FORMATS: tuple[Format, ...] = ("auto", "claude", "codex", "gemini", "text")
AGENT_KINDS = ("claude", "codex", "gemini")

CardKind = Literal["text", "thinking", "tool", "file", "todo", "result", "error", "system", "raw"]
CardStatus = Literal["running", "ok", "error", "info"]

SUMMARY_CHARS = 200  # a card's one-line summary
BODY_CHARS = 2_000  # a card's body as handed out; the uncut body is kept apart, see board.py
DETAIL_CHARS = 2_000  # a card's collapsed detail (a tool's result, a todo list)
RESULT_CHARS = 65_536  # AgentSummary.result: the final text, for a history row
WAITING_CHARS = 300  # AgentSummary.waiting


@dataclass(frozen=True)
class Usage:
    """Token totals of a run, the same meaning for every CLI.

    ``input_tokens`` counts every prompt token the model read, cached ones included;
    ``cached_input_tokens`` is the part of it read from a prompt cache. ``cost_usd`` is
    None where the CLI reports no cost (Codex, Gemini, and Claude before its ``result``).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cost_usd: float | None = None

    def as_dict(self) -> dict[str, int | float | None]:
        """Return the totals as a JSON-serialisable dict."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "cost_usd": self.cost_usd,
        }


@dataclass(frozen=True)
class AgentSummary:
    """What a run of an agent CLI has done so far, as its event stream tells it."""

    kind: str  # "claude" | "codex" | "gemini"
    session_id: str | None
    model: str | None
    turns: int
    tool_calls: int
    usage: Usage
    result: str | None  # the final text (cut to RESULT_CHARS)
    is_error: bool
    waiting: str | None  # why the agent waits for the user, else None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AgentSummary:
        """The summary a history row kept (the inverse of ``as_dict``)."""
        usage = data.get("usage") or {}
        cost = usage.get("cost_usd")
        return cls(
            kind=str(data.get("kind") or ""), session_id=data.get("session_id"), model=data.get("model"),
            turns=int(data.get("turns") or 0), tool_calls=int(data.get("tool_calls") or 0),
            usage=Usage(int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0),
                        int(usage.get("cached_input_tokens") or 0), None if cost is None else float(cost)),
            result=data.get("result"), is_error=bool(data.get("is_error")), waiting=data.get("waiting"),
        )

    def as_dict(self) -> dict[str, object]:
        """Return the summary as a JSON-serialisable dict, for a history row."""
        return {
            "kind": self.kind,
            "session_id": self.session_id,
            "model": self.model,
            "turns": self.turns,
            "tool_calls": self.tool_calls,
            "usage": self.usage.as_dict(),
            "result": self.result,
            "is_error": self.is_error,
            "waiting": self.waiting,
        }


@dataclass(frozen=True)
class Card:
    """One renderable piece of an agent's work: a message, a tool call, a file change…

    ``id`` is stable across updates of the same card (a tool call's card keeps its id when
    its result arrives), so a UI can replace the card in place. ``body`` and ``detail``
    are cut; ``full_chars`` is the length of the uncut body.
    """

    id: str
    kind: CardKind
    title: str
    summary: str
    body: str
    full_chars: int
    status: CardStatus
    detail: str = ""
