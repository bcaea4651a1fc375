"""What every CLI's parser shares: the run's tallies, and the common shapes of cards.

A parser turns one decoded JSON event (a dict) at a time into changes of its tallies and
of the card board; :meth:`Parser.handle` returns False for an event that changed nothing.
Parsers read events defensively (a missing or mistyped field is treated as absent), and
the reader catches whatever they still raise, so no event can break a stream.

Memory stays bounded: the per-id state a parser keeps (message usage, tool names, ids
already counted) lives in :class:`Recent` maps that forget their oldest entries.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, ClassVar, Generic, TypeVar

from .board import CardBoard
from .excerpt import as_text, compact, cut, first_line
from .summary import RESULT_CHARS, WAITING_CHARS, AgentSummary, CardStatus, Usage
from .tools import ToolView

K = TypeVar("K")
V = TypeVar("V")

RECENT_IDS = 4096  # ids remembered per kind of state; older ones are assumed finished


class Recent(OrderedDict[K, V], Generic[K, V]):
    """A dict that forgets its oldest entries beyond ``limit``."""

    def __init__(self, limit: int = RECENT_IDS) -> None:
        super().__init__()
        self.limit = limit

    def remember(self, key: K, value: V) -> None:
        """Set ``key`` to ``value`` as the newest entry."""
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


class Parser:
    """The state of one agent run as read from its events; one subclass per CLI."""

    kind: ClassVar[str] = ""

    def __init__(self, board: CardBoard) -> None:
        self.board = board
        self.session_id: str | None = None
        self.model: str | None = None
        self.turns = 0
        self.tool_calls = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cached_input_tokens = 0
        self.cost_usd: float | None = None
        self.result: str | None = None
        self.is_error = False
        self.waiting: str | None = None
        self._tools: Recent[str, str] = Recent()  # tool call id -> tool name, for results
        self._results = 0

    def handle(self, event: dict[str, Any]) -> bool:
        """Apply one event; return False if it changed nothing."""
        raise NotImplementedError

    def usage(self) -> Usage:
        """Return the token totals so far."""
        return Usage(self.input_tokens, self.output_tokens, self.cached_input_tokens, self.cost_usd)

    def turn_count(self) -> int:
        """Return the number of turns so far."""
        return self.turns

    def result_text(self) -> str | None:
        """Return the run's final text so far."""
        return self.result

    def summary(self) -> AgentSummary:
        """Return the run's summary so far."""
        return AgentSummary(
            kind=self.kind,
            session_id=self.session_id,
            model=self.model,
            turns=self.turn_count(),
            tool_calls=self.tool_calls,
            usage=self.usage(),
            result=self.result_text(),
            is_error=self.is_error,
            waiting=self.waiting,
        )

    # -- tallies ----------------------------------------------------------------

    def set_result(self, text: str | None) -> None:
        """Record the run's final text (cut to RESULT_CHARS)."""
        self.result = None if text is None else cut(text, RESULT_CHARS)

    def wait(self, why: str) -> None:
        """Record that the agent waits for the user, and why."""
        self.waiting = cut(" ".join(why[: WAITING_CHARS * 4].split()), WAITING_CHARS)

    def count_tool(self, tool_id: str, name: str) -> bool:
        """Count a tool call once per id; return True the first time."""
        if tool_id in self._tools:
            return False
        self._tools.remember(tool_id, name)
        self.tool_calls += 1
        return True

    # -- cards ----------------------------------------------------------------

    def text_card(self, card_id: str, title: str, text: str, *, kind: str = "text") -> None:
        """Put an assistant (or user) message as a ``text`` or ``thinking`` card."""
        self.board.put(card_id, "thinking" if kind == "thinking" else "text", title, text, "info")

    def tool_card(self, card_id: str, view: ToolView, status: CardStatus = "running") -> None:
        """Put a tool call's card as its call describes it."""
        old = self.board.get(card_id)
        detail = view.detail or (old.detail if old is not None else "")
        self.board.put(card_id, view.kind, view.title, view.body, status, summary=view.summary, detail=detail)

    def finish_tool(self, card_id: str, ok: bool, output: str, *, title: str = "Tool") -> None:
        """Mark a tool call's card ok or error, with its result collapsed into ``detail``.

        A card that already left the board comes back at the end with the result alone.
        """
        status: CardStatus = "ok" if ok else "error"
        card = self.board.get(card_id)
        if card is None:
            self.board.put(card_id, "tool", title, "", status, summary=first_line(output), detail=output)
            return
        if card.kind in ("todo", "file") and ok:
            # a todo list's or a file change's detail is its items or paths; keep them
            output = card.detail if not output.strip() else f"{card.detail}\n{output}".strip()
        self.board.restyle(card_id, status=status, detail=output)

    def error_card(self, message: str, *, title: str = "Error", status: CardStatus = "error") -> None:
        """Put an error as a new ``error`` card."""
        self.board.put(self.board.new_id("error"), "error", title, message, status)

    def system_card(self, card_id: str, title: str, body: str, *, summary: str | None = None) -> None:
        """Put an informational ``system`` card."""
        self.board.put(card_id, "system", title, body, "info", summary=summary)

    def result_card(self, ok: bool, text: str, detail: str) -> None:
        """Put the card of a run's (or a turn's) end."""
        self._results += 1
        self.board.put(
            f"result-{self._results}",
            "result" if ok else "error",
            "Result" if ok else "Error",
            text,
            "ok" if ok else "error",
            detail=detail,
        )

    def unknown_event(self, event: dict[str, Any]) -> bool:
        """Put an event this parser does not know as a ``raw`` card titled by its type."""
        kind = event.get("type")
        title = kind if isinstance(kind, str) and kind else "event"
        self.board.put(
            self.board.new_id("event"), "raw", cut(title, 80), as_text(event), "info", summary=compact(event)
        )
        return True


def tally_line(turns: int, tool_calls: int, usage: Usage, seconds: float | None = None) -> str:
    """Return a run's figures as one line, for a result card's detail."""
    parts = [
        f"{turns} turn{'s' if turns != 1 else ''}",
        f"{tool_calls} tool call{'s' if tool_calls != 1 else ''}",
    ]
    tokens = f"{usage.input_tokens:,} in / {usage.output_tokens:,} out tokens"
    if usage.cached_input_tokens:
        tokens += f" ({usage.cached_input_tokens:,} cached)"
    parts.append(tokens)
    if usage.cost_usd is not None:
        parts.append(f"${usage.cost_usd:.4f}")
    if seconds is not None:
        parts.append(f"{seconds:.1f} s")
    return " · ".join(parts)
