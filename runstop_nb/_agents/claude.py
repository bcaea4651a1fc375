"""Claude Code's ``--output-format stream-json --verbose`` events, as cards and tallies.

Field names follow claude-agent-sdk-python's ``_internal/message_parser.py``. Real streams
(claude 2.1.197) split one API message into several ``assistant`` lines (one per content
block) that share ``message.id`` and repeat its ``usage`` as it stood when the message
started (``output_tokens`` 1), so live output counts stay low until the ``result``; an
API error arrives as ``system/api_retry`` lines, an assistant line from model
``<synthetic>`` with an ``error`` field, then a ``result`` with subtype ``success`` but
``is_error: true`` and ``api_error_status``. ``system``, rate-limit and control lines are
shown by claude_system.py.

Rules:

- **usage**: per assistant message, deduplicated by ``message.id`` (a message's lines
  count once, with the largest figures any of its lines reported). ``input_tokens`` here is
  Anthropic's ``input_tokens + cache_creation_input_tokens + cache_read_input_tokens``;
  ``cached_input_tokens`` is ``cache_read_input_tokens``. A ``result`` is authoritative:
  its ``usage`` and ``total_cost_usd`` replace the totals (they are the process's running
  totals, so with ``--input-format stream-json`` each result restates the whole session),
  and messages after it add to them until the next result. Cost is None before a result.
- **turns**: the distinct main-thread (no ``parent_tool_use_id``) assistant message ids,
  i.e. model calls (not the ``<synthetic>`` messages the CLI makes up for errors); a
  ``result``'s ``num_turns`` replaces the count, and later messages add to it.
- **model**: ``system/init``'s ``model`` (e.g. ``claude-opus-4-8[1m]``), else the first
  main-thread message's.
- **tool_calls**: distinct ``tool_use`` ids (sub-agents' included).
- **waiting**: set by a ``result`` with ``permission_denials`` or ``deferred_tool_use``,
  by a ``control_request`` asking ``can_use_tool``, by a tool result saying permission was
  not granted, and by a call of AskUserQuestion or ExitPlanMode; cleared by the next
  assistant line or ``system/init`` (the agent continues).
- **result**: ``result.result``; before it (or when it is empty) the last main-thread
  assistant text.
"""

from __future__ import annotations

from typing import Any

from .claude_system import control_request, rate_limit, system_event
from .excerpt import as_text, first_line, get_dict, get_int, get_list, get_str
from .parser import Parser, Recent, tally_line
from .summary import Usage
from .tools import QUESTION_TOOLS, describe, telling

_DENIED = ("requested permissions to use", "haven't granted it yet", "doesn't want to proceed with this tool")


class _Message:
    """What is kept of one assistant message: its usage and how many blocks it showed."""

    __slots__ = ("blocks", "usage")

    def __init__(self) -> None:
        self.usage = (0, 0, 0)  # input (all), output, cache reads
        self.blocks = 0


class ClaudeParser(Parser):
    """The state of one Claude Code run."""

    kind = "claude"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._messages: Recent[str, _Message] = Recent(512)
        self._base = (0, 0, 0)  # usage of the last result
        self._live = [0, 0, 0]  # usage of messages since the last result
        self._base_turns = 0
        self._live_turns = 0
        self._last_text: str | None = None

    def usage(self) -> Usage:
        base, live = self._base, self._live
        return Usage(base[0] + live[0], base[1] + live[1], base[2] + live[2], self.cost_usd)

    def turn_count(self) -> int:
        return self._base_turns + self._live_turns

    def handle(self, event: dict[str, Any]) -> bool:
        kind = event.get("type")
        session = event.get("session_id")
        if isinstance(session, str) and session:
            self.session_id = session
        if kind == "assistant":
            self._assistant(event)
        elif kind == "user":
            self._user(event)
        elif kind == "result":
            self._result(event)
        elif kind == "system":
            system_event(self, event)
        elif kind == "rate_limit_event":
            rate_limit(self, get_dict(event, "rate_limit_info"))
        elif kind == "control_request":
            control_request(self, event)
        elif kind in ("control_response", "control_cancel_request"):
            self.waiting = None
        elif kind in ("stream_event", "keep_alive"):
            return False  # token deltas: the complete assistant lines follow
        else:
            return self.unknown_event(event)
        return True

    # -- events ----------------------------------------------------------------

    def _assistant(self, event: dict[str, Any]) -> None:
        message = get_dict(event, "message")
        main = not isinstance(event.get("parent_tool_use_id"), str)
        model = get_str(message, "model")
        if model and model != "<synthetic>" and main and self.model is None:
            self.model = model  # init's name (with a context suffix such as [1m]) is kept
        message_id = get_str(message, "id") or get_str(event, "uuid") or self.board.new_id("message")
        record = self._messages.get(message_id)
        if record is None:
            record = _Message()
            self._messages.remember(message_id, record)
            self._live_turns += main and model != "<synthetic>"
        self._count_usage(record, get_dict(message, "usage"))
        self.waiting = None
        error = event.get("error")
        content = message.get("content")
        blocks = (
            [{"type": "text", "text": content}] if isinstance(content, str) else get_list(message, "content")
        )
        for block in blocks:
            if isinstance(block, dict):
                self._block(block, message_id, record, main, error)

    def _count_usage(self, record: _Message, usage: dict[str, Any]) -> None:
        seen = _tokens(usage)
        new = (max(record.usage[0], seen[0]), max(record.usage[1], seen[1]), max(record.usage[2], seen[2]))
        for i in range(3):
            self._live[i] += new[i] - record.usage[i]
        record.usage = new

    def _block(
        self, block: dict[str, Any], message_id: str, record: _Message, main: bool, error: object
    ) -> None:
        kind = block.get("type")
        record.blocks += 1
        card_id = f"{message_id}:{record.blocks}"
        who = "Assistant" if main else "Sub-agent"
        if kind == "text":
            text = as_text(block.get("text"))
            if error:
                self.error_card(text, title=f"API error ({first_line(as_text(error), 60)})")
                return
            self.text_card(card_id, who, text)
            if main:
                self._last_text = text
                self.set_result(text)
        elif kind in ("thinking", "redacted_thinking"):
            self.text_card(
                card_id, "Thinking", as_text(block.get("thinking")) or "[redacted]", kind="thinking"
            )
        elif kind in ("tool_use", "server_tool_use", "mcp_tool_use"):
            tool_id = get_str(block, "id") or card_id
            name = get_str(block, "name") or "tool"
            params = get_dict(block, "input")
            self.count_tool(tool_id, name)
            self.tool_card(tool_id, describe(name, params))
            if name in QUESTION_TOOLS:
                question = get_list(params, "questions")
                asked = (
                    get_str(question[0], "question") if question and isinstance(question[0], dict) else None
                )
                self.wait(f"question: {asked}" if asked else f"{name}: {telling(params)}")
        elif kind in ("tool_result", "web_search_tool_result", "advisor_tool_result"):
            self._tool_result(block)
        else:
            self.text_card(card_id, f"{who} ({kind})", as_text(block))

    def _user(self, event: dict[str, Any]) -> None:
        message = get_dict(event, "message")
        content = message.get("content")
        if isinstance(content, str):
            self.text_card(self.board.new_id("user"), "User", content)
            return
        for block in get_list(message, "content"):
            if not isinstance(block, dict):
                continue
            if block.get("type") == "tool_result":
                self._tool_result(block)
            elif block.get("type") == "text":
                self.text_card(self.board.new_id("user"), "User", as_text(block.get("text")))

    def _tool_result(self, block: dict[str, Any]) -> None:
        tool_id = get_str(block, "tool_use_id") or self.board.new_id("tool")
        output = _result_text(block.get("content"))
        failed = block.get("is_error") is True
        name = self._tools.get(tool_id, "Tool")
        self.finish_tool(tool_id, not failed, output, title=name)
        if failed and any(mark in output[:2000] for mark in _DENIED):
            self.wait(f"permission denied: {name}")

    def _result(self, event: dict[str, Any]) -> None:
        subtype = get_str(event, "subtype") or ""
        self.is_error = event.get("is_error") is True or subtype.startswith("error")
        text = event.get("result")
        if isinstance(text, str) and text:
            self.set_result(text)
        elif not self.is_error:
            self.set_result(self._last_text)
        usage = event.get("usage")
        if isinstance(usage, dict):
            self._base, self._live = _tokens(usage), [0, 0, 0]
        cost = event.get("total_cost_usd")
        if isinstance(cost, (int, float)) and not isinstance(cost, bool):
            self.cost_usd = float(cost)
        if isinstance(event.get("num_turns"), int):
            self._base_turns, self._live_turns = get_int(event, "num_turns"), 0
        denials = [d for d in get_list(event, "permission_denials") if isinstance(d, dict)]
        lines = [
            f"denied: {get_str(d, 'tool_name') or 'tool'} {telling(get_dict(d, 'tool_input'))}"
            for d in denials
        ]
        deferred = get_dict(event, "deferred_tool_use")
        if lines:
            self.wait("permission denied: " + "; ".join(line[8:] for line in lines))
        elif deferred:
            name = get_str(deferred, "name") or "tool"
            self.wait(f"deferred tool use: {name} {telling(get_dict(deferred, 'input'))}")
        errors = "\n".join(as_text(e) for e in get_list(event, "errors"))
        body = text if isinstance(text, str) and text else errors or self.result or subtype
        status = event.get("api_error_status")
        if status is not None:
            lines.insert(0, f"API error status {as_text(status)}")
        summary = self.summary()
        seconds = event.get("duration_ms")
        tally = tally_line(
            summary.turns,
            summary.tool_calls,
            summary.usage,
            seconds / 1000 if isinstance(seconds, (int, float)) else None,
        )
        self.result_card(not self.is_error, body, "\n".join([tally, *lines]))


def _tokens(usage: dict[str, Any]) -> tuple[int, int, int]:
    """Return Anthropic usage as (all input tokens, output tokens, cache-read tokens)."""
    reads = get_int(usage, "cache_read_input_tokens")
    every = get_int(usage, "input_tokens") + get_int(usage, "cache_creation_input_tokens") + reads
    return every, get_int(usage, "output_tokens"), reads


def _result_text(content: object) -> str:
    """Return a tool result's content as text: strings joined, images as ``[image]``."""
    if not isinstance(content, list):
        return as_text(content)
    parts: list[str] = []
    for block in content:
        if isinstance(block, dict) and block.get("type") == "text":
            parts.append(as_text(block.get("text")))
        elif isinstance(block, dict) and block.get("type") == "image":
            parts.append("[image]")
        else:
            parts.append(as_text(block))
    return "\n".join(parts)
