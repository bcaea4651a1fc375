"""Gemini CLI's ``--output-format stream-json`` events, as cards and tallies.

Field names follow gemini-cli ``packages/core/src/output/types.ts`` (events ``init``,
``message``, ``tool_use``, ``tool_result``, ``error``, ``result``, each with a
``timestamp``) and the emitter in ``packages/cli/src/nonInteractiveCli.ts``. In real
streams the assistant's text comes as many ``message`` events with ``delta: true`` (they
are coalesced into one card per message), ``tool_result.output`` is the tool's display
text (not the raw output), and an API error gives a ``result`` with ``status: "error"``. With model routing,
``init.model`` is ``"auto"``; the models used are only named in ``result.stats.models``.

Rules:

- **usage**: from ``result.stats``: ``input_tokens`` (which includes the cached part),
  ``output_tokens`` and ``cached``; the stats of several results (several runs in one
  stream) are summed. Gemini streams carry no per-message usage, so the totals are zero
  until the result. Gemini reports no cost: ``cost_usd`` stays None.
- **turns**: model responses: the first ``message`` (assistant) or ``tool_use`` after the
  start, a user message or a tool result begins a turn (the CLI's own turn loop).
- **tool_calls**: ``result.stats.tool_calls`` when present; before the result (or without
  it) the distinct ``tool_use`` ids.
- **is_error**: ``result.status == "error"``; before the result, an ``error`` event of
  severity ``error``.
- **waiting**: set by a tool result refused by policy (``error.type`` is
  ``policy_violation``) or a call of a tool that asks the user; cleared when the agent
  continues (its next message or tool call).
- **model**: ``init.model``; if that is ``"auto"``, the model of ``result.stats.models``
  with the most tokens (the router's own small model, when the main one failed).
- **result**: the text of the last assistant message.
"""

from __future__ import annotations

from typing import Any

from .board import TextRun
from .excerpt import as_text, cut, get_dict, get_int, get_str
from .parser import Parser, tally_line
from .summary import RESULT_CHARS
from .tools import QUESTION_TOOLS, describe, telling


class GeminiParser(Parser):
    """The state of one ``gemini -p`` run."""

    kind = "gemini"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._message: TextRun | None = None  # the assistant message being streamed
        self._message_id = ""
        self._last: TextRun | None = None  # the last assistant message
        self._responding = False
        self._tools_at_result = 0

    def result_text(self) -> str | None:
        return None if self._last is None else cut(self._last.text(), RESULT_CHARS)

    def handle(self, event: dict[str, Any]) -> bool:
        kind = event.get("type")
        if kind == "message":
            self._message_event(event)
        elif kind == "tool_use":
            self._respond()
            self._message = None
            self._tool_use(event)
        elif kind == "tool_result":
            self._responding = False
            self._message = None
            self._tool_result(event)
        elif kind == "init":
            self._message, self._responding, self.waiting = None, False, None
            self.session_id = get_str(event, "session_id") or self.session_id
            self.model = get_str(event, "model") or self.model
            body = f"model: {self.model or '?'}\nsession: {self.session_id or '?'}"
            self.system_card(f"init:{self.session_id}", "Session started", body, summary=self.model or "")
        elif kind == "error":
            severe = event.get("severity") != "warning"
            self.is_error = self.is_error or severe
            self.error_card(
                get_str(event, "message") or as_text(event),
                title="Error" if severe else "Warning",
                status="error" if severe else "info",
            )
        elif kind == "result":
            self._message, self._responding = None, False
            self._result(event)
        else:
            return self.unknown_event(event)
        return True

    def _respond(self) -> None:
        """Count a turn when the model starts a new response; the agent is not waiting."""
        self.waiting = None
        if not self._responding:
            self._responding = True
            self.turns += 1

    def _message_event(self, event: dict[str, Any]) -> None:
        content = as_text(event.get("content"))
        if event.get("role") != "assistant":
            self._message, self._responding = None, False
            self.text_card(self.board.new_id("user"), "User", content)
            return
        self._respond()
        if self._message is None or event.get("delta") is not True:
            self._message = TextRun()
            self._message_id = self.board.new_id("message")
        self._message.add(content)
        self._last = self._message
        self.board.put_run(self._message_id, "text", "Assistant", self._message, "info")
        if event.get("delta") is not True:
            self._message = None  # a whole message: the next text starts a new card

    def _tool_use(self, event: dict[str, Any]) -> None:
        tool_id = get_str(event, "tool_id") or self.board.new_id("tool")
        name = get_str(event, "tool_name") or "tool"
        params = get_dict(event, "parameters")
        self.count_tool(tool_id, name)
        self.tool_card(tool_id, describe(name, params))
        if name in QUESTION_TOOLS:
            self.wait(f"{name}: {telling(params)}")

    def _tool_result(self, event: dict[str, Any]) -> None:
        tool_id = get_str(event, "tool_id") or self.board.new_id("tool")
        error = get_dict(event, "error")
        ok = event.get("status") == "success" and not error
        output = get_str(event, "output") or ""
        message = get_str(error, "message") or ""
        detail = "\n".join(p for p in (output, message) if p) if not ok else output
        name = self._tools.get(tool_id, "tool")
        self.finish_tool(tool_id, ok, detail, title=name)
        if get_str(error, "type") == "policy_violation":
            self.wait(f"permission denied: {name} ({message or 'policy'})")

    def _result(self, event: dict[str, Any]) -> None:
        self.is_error = event.get("status") == "error"
        stats = get_dict(event, "stats")
        models = {k: v for k, v in get_dict(stats, "models").items() if isinstance(v, dict)}
        if models and self.model in (None, "auto"):
            # init says "auto" when a router picks the model; name the one that did the most
            name, figures = max(models.items(), key=lambda m: get_int(m[1], "total_tokens"))
            self.model = name if get_int(figures, "total_tokens") else self.model
        if stats:
            self.input_tokens += get_int(stats, "input_tokens")
            self.output_tokens += get_int(stats, "output_tokens")
            self.cached_input_tokens += get_int(stats, "cached")
            if isinstance(stats.get("tool_calls"), int):
                self.tool_calls = self._tools_at_result + get_int(stats, "tool_calls")
                self._tools_at_result = self.tool_calls
        error = get_dict(event, "error")
        message = get_str(error, "message") or ""
        text = self.result_text() or ""
        body = f"{message}\n\n{text}".strip() if self.is_error else text
        seconds = stats.get("duration_ms")
        tally = tally_line(
            self.turns,
            self.tool_calls,
            self.usage(),
            seconds / 1000 if isinstance(seconds, (int, float)) else None,
        )
        if error:
            tally += f"\n{get_str(error, 'type') or 'error'}: {message}"
        self.result_card(not self.is_error, body or ("error" if self.is_error else ""), tally)
