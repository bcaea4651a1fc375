"""How a tool call looks on a card: Claude Code's and Gemini CLI's tools by name.

Both CLIs report a tool call as a name and a dict of parameters. Shell tools show their
command; file tools show the path, and the ones that write (Claude's Edit, MultiEdit,
Write, NotebookEdit; Gemini's write_file, replace) become ``file`` cards with a small
diff; todo tools (Claude's TodoWrite, Gemini's write_todos) become ``todo`` cards with
``[x] text`` lines. Any other tool shows its most telling parameter and its input as JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .excerpt import as_text, compact, first_line, get_list, get_str
from .summary import CardKind

# Tools that ask the user something: while one is pending, the agent is waiting.
QUESTION_TOOLS = frozenset({"AskUserQuestion", "ExitPlanMode", "ask_user"})

_SHELL = frozenset({"Bash", "run_shell_command", "shell", "exec_command"})
_WRITE = frozenset({"Write", "write_file", "create_file"})
_EDIT = frozenset({"Edit", "replace", "edit", "edit_file"})
_MULTI_EDIT = frozenset({"MultiEdit"})
_NOTEBOOK = frozenset({"NotebookEdit"})
_TODO = frozenset({"TodoWrite", "write_todos"})
# The parameter that best says what a call is about, most telling first.
_KEYS = (
    "command",
    "file_path",
    "absolute_path",
    "notebook_path",
    "path",
    "dir_path",
    "pattern",
    "query",
    "url",
    "description",
    "prompt",
    "fact",
)
_MARKS = {"completed": "[x]", "in_progress": "[~]", "cancelled": "[-]"}


@dataclass(frozen=True)
class ToolView:
    """The parts of a tool call's card, before the result arrives."""

    kind: CardKind  # "tool", "file" or "todo"
    title: str
    summary: str
    body: str
    detail: str = ""


def describe(name: str, params: Mapping[str, Any]) -> ToolView:
    """Return how the call of tool ``name`` with ``params`` shows on a card."""
    path = get_str(params, "file_path", "absolute_path", "notebook_path", "path") or ""
    if name in _SHELL:
        command = get_str(params, "command", "cmd") or ""
        return ToolView("tool", name, first_line(command), command or as_text(params))
    if name in _WRITE:
        content = get_str(params, "content") or ""
        return ToolView("file", name, path, content, f"write {path}")
    if name in _EDIT:
        body = diff(get_str(params, "old_string") or "", get_str(params, "new_string") or "")
        return ToolView("file", name, path, body, f"update {path}")
    if name in _MULTI_EDIT:
        edits = [e for e in get_list(params, "edits") if isinstance(e, Mapping)]
        body = "\n".join(diff(get_str(e, "old_string") or "", get_str(e, "new_string") or "") for e in edits)
        return ToolView("file", name, path, body, f"update {path} ({len(edits)} edits)")
    if name in _NOTEBOOK:
        mode = get_str(params, "edit_mode") or "replace"
        return ToolView("file", name, path, get_str(params, "new_source") or "", f"{mode} {path}")
    if name in _TODO:
        lines = todo_lines(get_list(params, "todos"))
        done = sum(1 for line in lines if line.startswith("[x]"))
        text = "\n".join(lines)
        return ToolView("todo", "Todo list", f"{done}/{len(lines)} done", text, text)
    return ToolView("tool", name, telling(params), as_text(params))


def telling(params: Mapping[str, Any]) -> str:
    """Return the most telling parameter of a call as one line, else the params compacted."""
    for key in _KEYS:
        value = params.get(key)
        if isinstance(value, str) and value.strip():
            return first_line(value)
    return compact(params)


def diff(old: str, new: str) -> str:
    """Return a replacement of ``old`` by ``new`` as ``-``/``+`` lines."""
    minus = ["- " + line for line in old.splitlines()]
    plus = ["+ " + line for line in new.splitlines()]
    return "\n".join(minus + plus)


def todo_lines(items: list[Any]) -> list[str]:
    """Return todo items as ``[x] text`` (done), ``[~]`` (in progress) or ``[ ]`` lines.

    Claude's items are ``{content, status}``, Gemini's ``{description, status}`` and
    Codex's ``{text, completed}``.
    """
    lines: list[str] = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        text = get_str(item, "content", "description", "text", "activeForm") or ""
        status = item.get("status")
        if item.get("completed") is True:
            status = "completed"
        mark = _MARKS.get(status, "[ ]") if isinstance(status, str) else "[ ]"
        lines.append(f"{mark} {first_line(text)}")
    return lines
