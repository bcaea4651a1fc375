"""Claude Code's out-of-band events: ``system`` lines, rate limits and control requests.

``system/init`` names the session, model and cwd; ``task_*`` and ``hook_*`` lines update
one card per task or hook in place; ``status``, ``api_retry`` (an API call failed and is
retried) and ``compact_boundary`` are notices; any other subtype shows as a ``system``
card titled by it. A ``control_request`` asking ``can_use_tool`` (with
``--permission-prompt-tool stdio``) means the agent waits for a permission.
"""

from __future__ import annotations

from typing import Any

from .excerpt import as_text, get_dict, get_int, get_list, get_str
from .parser import Parser
from .summary import CardStatus
from .tools import telling

_NOTICES = {"status": "Status", "api_retry": "Retrying API call", "compact_boundary": "Compacted"}
_QUIET = ("type", "subtype", "session_id", "uuid")  # fields a notice's body leaves out


def system_event(parser: Parser, event: dict[str, Any]) -> None:
    """Show a ``system`` line; ``init`` also sets the run's model and clears ``waiting``."""
    board = parser.board
    subtype = get_str(event, "subtype") or "system"
    if subtype == "init":
        _init(parser, event)
    elif subtype.startswith("task_"):
        task = get_str(event, "task_id") or "task"
        status = get_str(event, "status") or get_str(get_dict(event, "patch"), "status") or ""
        text = get_str(event, "summary", "description", "last_tool_name") or subtype
        shown: CardStatus = "ok" if status == "completed" else "error" if status == "failed" else "running"
        if status and shown == "running":
            shown = "info"  # stopped, killed…
        board.put(f"task:{task}", "system", "Task", text, shown, detail=f"{subtype} {status}".strip())
    elif subtype.startswith("hook_"):
        hook = get_str(event, "hook_id") or board.new_id("hook")
        name = get_str(event, "hook_name", "hook_event", "hook_event_name") or "hook"
        outcome = get_str(event, "outcome") or ""
        output = get_str(event, "output", "stdout", "stderr") or ""
        done: CardStatus = "error" if outcome == "error" else "ok"
        status_now: CardStatus = "running" if subtype == "hook_started" else done
        board.put(f"hook:{hook}", "system", f"Hook {name}", output or name, status_now, detail=outcome)
    elif subtype in _NOTICES:
        body = as_text({k: v for k, v in event.items() if k not in _QUIET})
        card_id = subtype if subtype != "compact_boundary" else board.new_id("compact")
        parser.system_card(card_id, _NOTICES[subtype], body, summary=_notice_line(subtype, event))
    else:
        body = as_text({k: v for k, v in event.items() if k not in ("type", "session_id", "uuid")})
        parser.system_card(board.new_id("system"), subtype, body)


def rate_limit(parser: Parser, info: dict[str, Any]) -> None:
    """Show a ``rate_limit_event`` on the one rate-limit card, an error unless allowed."""
    status = get_str(info, "status") or "?"
    parts = [status, get_str(info, "rateLimitType") or ""]
    if info.get("resetsAt") is not None:
        parts.append(f"resets at {as_text(info.get('resetsAt'))}")
    shown: CardStatus = "info" if status.startswith("allowed") else "error"
    parser.board.put(
        "rate-limit", "system", "Rate limit", as_text(info), shown, summary=" · ".join(p for p in parts if p)
    )


def control_request(parser: Parser, event: dict[str, Any]) -> None:
    """Show a ``control_request``; one asking ``can_use_tool`` sets ``waiting``."""
    request = get_dict(event, "request")
    subtype = get_str(request, "subtype") or "request"
    card_id = f"control:{get_str(event, 'request_id') or parser.board.new_id('request')}"
    if subtype == "can_use_tool":
        name = get_str(request, "tool_name") or "tool"
        what = telling(get_dict(request, "input"))
        parser.wait(f"permission requested: {name} {what}")
        parser.system_card(card_id, "Permission requested", as_text(request), summary=f"{name}: {what}")
    else:
        parser.system_card(card_id, f"Control request ({subtype})", as_text(request))


def _init(parser: Parser, event: dict[str, Any]) -> None:
    parser.waiting = None
    model = get_str(event, "model")
    if model:
        parser.model = model
    cwd = get_str(event, "cwd") or ""
    tools = [t for t in get_list(event, "tools") if isinstance(t, str)]
    servers = [s for s in get_list(event, "mcp_servers") if isinstance(s, dict)]
    lines = [
        f"model: {model or '?'}",
        f"cwd: {cwd}",
        f"session: {parser.session_id or '?'}",
        f"permission mode: {get_str(event, 'permissionMode') or '?'}",
        f"claude code: {get_str(event, 'claude_code_version') or '?'}",
        f"tools ({len(tools)}): {', '.join(tools[:60])}",
    ]
    if servers:
        lines.append(
            "mcp: " + ", ".join(f"{get_str(s, 'name')} ({get_str(s, 'status')})" for s in servers[:30])
        )
    summary = " · ".join(p for p in (model, cwd) if p)
    parser.system_card(f"init:{parser.session_id}", "Session started", "\n".join(lines), summary=summary)


def _notice_line(subtype: str, event: dict[str, Any]) -> str:
    """Return one line for a notice: a retry's attempt and cause, a compaction, a status."""
    if subtype == "api_retry":
        delay = event.get("retry_delay_ms")
        wait = f" · next in {delay / 1000:.1f} s" if isinstance(delay, (int, float)) else ""
        cause = " ".join(as_text(event.get(k)) for k in ("error_status", "error") if event.get(k) is not None)
        tries = f"{as_text(event.get('attempt'))}/{as_text(event.get('max_retries'))}"
        return f"attempt {tries} after {cause}{wait}"
    if subtype == "compact_boundary":
        meta = get_dict(event, "compact_metadata")
        return f"{get_str(meta, 'trigger') or 'compacted'} at {get_int(meta, 'pre_tokens'):,} tokens"
    return as_text(event.get("status")) or subtype
