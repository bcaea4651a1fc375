"""Codex's ``codex exec --json`` events, as cards and tallies.

Field names follow codex-rs ``exec/src/exec_events.rs``: ``thread.started``, ``turn.*``,
``item.started/updated/completed`` with a typed ``item``, ``item.plan.delta``,
``request_user_input`` and ``error``. In real streams a command shows as
``/bin/bash -lc '…'`` (its card shows the script inside), ``turn.completed.usage`` also
has ``reasoning_output_tokens`` (part of ``output_tokens``, as in the OpenAI API) and
``cache_write_input_tokens`` (part of ``input_tokens``), and an API error gives
``error`` lines (``Reconnecting... 1/N`` first), then ``turn.failed``. The stream names
no model: ``model`` stays None.

Rules:

- **usage**: the sum of every ``turn.completed.usage``; ``input_tokens``,
  ``cached_input_tokens`` and ``output_tokens`` map directly (Codex's input count already
  includes the cached part). Codex reports no cost: ``cost_usd`` stays None.
- **turns**: the number of ``turn.started`` events.
- **tool_calls**: distinct item ids of the tool-like items: ``command_execution``,
  ``file_change``, ``mcp_tool_call``, ``collab_tool_call`` and ``web_search``.
- **is_error**: set by ``error`` and ``turn.failed``, cleared by ``turn.completed``. An
  ``error`` whose message starts with ``Reconnecting...`` is a retry notice, shown as a
  ``system`` card: it is no error yet.
- **waiting**: set by ``request_user_input`` (its questions) and by a
  ``command_execution`` with status ``declined``; cleared when the agent continues (the
  next item or ``turn.started``), and set again at ``turn.completed`` if a command of the
  turn was declined.
- **result**: the text of the last ``agent_message``.
- A turn's end (``turn.completed``/``turn.failed``) is shown as a ``result``/``error`` card.
"""

from __future__ import annotations

import shlex
from typing import Any

from .board import TextRun
from .excerpt import as_text, first_line, get_dict, get_int, get_list, get_str
from .parser import Parser, Recent, tally_line
from .summary import CardStatus
from .tools import todo_lines

_TOOL_ITEMS = frozenset(
    {"command_execution", "file_change", "mcp_tool_call", "collab_tool_call", "web_search"}
)
_SHELLS = frozenset({"bash", "sh", "zsh", "dash"})


class CodexParser(Parser):
    """The state of one ``codex exec`` run."""

    kind = "codex"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plans: Recent[str, TextRun] = Recent(64)  # plan item id -> its streamed text
        self._declined: list[str] = []  # commands declined in this turn

    def handle(self, event: dict[str, Any]) -> bool:
        kind = event.get("type")
        if kind in ("item.started", "item.updated", "item.completed"):
            item = get_dict(event, "item")
            self.waiting = None
            self._item(item, kind == "item.completed")
        elif kind == "item.plan.delta":
            self._plan_delta(get_str(event, "item_id") or "plan", as_text(event.get("delta")))
        elif kind == "thread.started":
            self.session_id = get_str(event, "thread_id") or self.session_id
            self.system_card(f"init:{self.session_id}", "Session started", f"thread: {self.session_id}")
        elif kind == "turn.started":
            self.turns += 1
            self.waiting = None
            self._declined = []
        elif kind == "turn.completed":
            self._turn_completed(get_dict(event, "usage"))
        elif kind == "turn.failed":
            self.is_error = True
            message = get_str(get_dict(event, "error"), "message") or "turn failed"
            self.result_card(False, message, tally_line(self.turns, self.tool_calls, self.usage()))
        elif kind == "error":
            message = get_str(event, "message") or as_text(event)
            if message.startswith("Reconnecting"):  # a retry notice ("Reconnecting... 1/5 (…)")
                self.system_card("reconnecting", "Retrying API call", message)
            else:
                self.is_error = True
                self.error_card(message)
        elif kind == "request_user_input":
            self._request_input(event)
        else:
            return self.unknown_event(event)
        return True

    def _turn_completed(self, usage: dict[str, Any]) -> None:
        self.input_tokens += get_int(usage, "input_tokens")
        self.cached_input_tokens += get_int(usage, "cached_input_tokens")
        self.output_tokens += get_int(usage, "output_tokens")
        self.is_error = False
        tally = tally_line(self.turns, self.tool_calls, self.usage())
        reasoning = get_int(usage, "reasoning_output_tokens")
        if reasoning:
            tally += f" · {reasoning:,} reasoning"
        if self._declined:
            self.wait("declined: " + "; ".join(self._declined))
        self.result_card(True, self.result or "", tally)

    def _item(self, item: dict[str, Any], done: bool) -> None:
        item_id = get_str(item, "id") or self.board.new_id("item")
        kind = get_str(item, "type") or "item"
        if kind in _TOOL_ITEMS:
            self.count_tool(item_id, kind)
        status = get_str(item, "status") or ("completed" if done else "in_progress")
        shown: CardStatus = (
            "ok" if status == "completed" else "running" if status == "in_progress" else "error"
        )
        if kind == "agent_message":
            text = as_text(item.get("text"))
            self.text_card(item_id, "Assistant", text)
            self.set_result(text)
        elif kind == "reasoning":
            self.text_card(item_id, "Reasoning", as_text(item.get("text")), kind="thinking")
        elif kind == "plan":
            self.text_card(item_id, "Plan", as_text(item.get("text")))
        elif kind == "command_execution":
            self._command(item_id, item, status, shown)
        elif kind == "file_change":
            changes = [c for c in get_list(item, "changes") if isinstance(c, dict)]
            lines = [f"{get_str(c, 'kind') or 'update'} {get_str(c, 'path') or '?'}" for c in changes]
            paths = ", ".join(get_str(c, "path") or "?" for c in changes[:20])
            title = f"Edited {len(changes)} file{'s' if len(changes) != 1 else ''}"
            self.board.put(
                item_id, "file", title, "\n".join(lines), shown, summary=paths, detail="\n".join(lines)
            )
        elif kind == "mcp_tool_call":
            self._mcp(item_id, item, shown)
        elif kind == "collab_tool_call":
            prompt = get_str(item, "prompt") or ""
            detail = as_text(item.get("agents_states")) if item.get("agents_states") else ""
            title = f"Agent {get_str(item, 'tool') or 'call'}"
            self.board.put(item_id, "tool", title, prompt, shown, detail=detail)
        elif kind == "web_search":
            query = get_str(item, "query") or ""
            self.board.put(item_id, "tool", "Web search", query, shown, detail=as_text(item.get("action")))
        elif kind == "todo_list":
            lines = todo_lines(get_list(item, "items"))
            done_count = sum(1 for line in lines if line.startswith("[x]"))
            text = "\n".join(lines)
            self.board.put(
                item_id,
                "todo",
                "Todo list",
                text,
                "ok" if done else "running",
                summary=f"{done_count}/{len(lines)} done",
                detail=text,
            )
        elif kind == "error":
            self.board.put(item_id, "error", "Error", get_str(item, "message") or as_text(item), "error")
        else:
            self.board.put(item_id, "raw", kind, as_text(item), "info")

    def _command(self, item_id: str, item: dict[str, Any], status: str, shown: CardStatus) -> None:
        command = as_text(item.get("command"))
        script = shell_script(command)
        code = item.get("exit_code")
        output = as_text(item.get("aggregated_output"))
        if status == "completed" and isinstance(code, int) and code != 0:
            shown = "error"
        if status == "declined":
            self._declined = [*self._declined[-9:], first_line(script, 120)]
            self.wait(f"declined: {first_line(script, 200)}")
        tail = f"exit {code}" if isinstance(code, int) else status if status != "in_progress" else ""
        detail = f"{output.rstrip()}\n{tail}".strip() if len(output) < 100_000 else output
        self.board.put(item_id, "tool", "Shell", script, shown, detail=detail)

    def _mcp(self, item_id: str, item: dict[str, Any], shown: CardStatus) -> None:
        server, tool = get_str(item, "server") or "mcp", get_str(item, "tool") or "tool"
        arguments = item.get("arguments")
        error = get_str(get_dict(item, "error"), "message")
        result = get_dict(item, "result")
        parts = [
            as_text(c.get("text")) if isinstance(c, dict) and c.get("type") == "text" else as_text(c)
            for c in get_list(result, "content")
        ]
        if not parts and result.get("structured_content") is not None:
            parts.append(as_text(result.get("structured_content")))
        detail = error or "\n".join(parts)
        self.board.put(
            item_id,
            "tool",
            f"{server}.{tool}",
            as_text(arguments),
            "error" if error else shown,
            summary=first_line(as_text(arguments)) if isinstance(arguments, (str, dict)) else "",
            detail=detail,
        )

    def _plan_delta(self, item_id: str, delta: str) -> None:
        run = self._plans.get(item_id)
        if run is None:
            run = TextRun()
            self._plans.remember(item_id, run)
        run.add(delta)
        self.board.put_run(item_id, "text", "Plan", run, "running")

    def _request_input(self, event: dict[str, Any]) -> None:
        questions = [q for q in get_list(event, "questions") if isinstance(q, dict)]
        asked = [get_str(q, "question", "header") or "?" for q in questions]
        self.wait("question: " + " / ".join(asked) if asked else "input requested")
        lines: list[str] = []
        for question in questions:
            lines.append(get_str(question, "question", "header") or "?")
            for option in get_list(question, "options"):
                if isinstance(option, dict):
                    lines.append(
                        f"  - {get_str(option, 'label') or '?'}: {get_str(option, 'description') or ''}"
                    )
        card_id = f"input:{get_str(event, 'call_id', 'id') or self.board.new_id('input')}"
        self.system_card(card_id, "Input requested", "\n".join(lines) or "input requested")


def shell_script(command: str) -> str:
    """Return the script of a ``/bin/bash -lc '…'`` command, else the command as it is."""
    if len(command) > 100_000 or " -" not in command[:64]:
        return command
    try:
        argv = shlex.split(command)
    except ValueError:
        return command
    if len(argv) == 3 and argv[0].rsplit("/", 1)[-1] in _SHELLS and argv[1] in ("-c", "-lc", "-ic"):
        return argv[2]
    return command
