"""What a run view sends to the browser: a run's state as small JSON-able values.

Pure functions of a :class:`~runstop_nb._runview.RunView`: no widget, no thread, no I/O
beyond what the run's own members do, so they are tested on a fake run. The kernel
sends *state* (status, times, counters, the bounded tail, stop details, cards...), never
presentation: the browser formats clocks and lays things out. Every value is bounded:
the tail window, the card window and each update stay far below the 64 KiB a message
may take.

Members of the protocol that a run may not have yet are read through :func:`attr`,
with the value a plain, finished-looking run would give.
"""

from __future__ import annotations

import os
import shlex
import signal
from collections.abc import Sequence
from typing import Any

from ._status import CAUSE_WORDS, STATUSES
from ._units import plural, size

WINDOW_LINES = 200
WINDOW_CHARS = 40_000  # ~48 KiB of JSON with escapes: under the 64 KiB per-update budget
LINE_CHARS = 2_000
CARD_WINDOW = 100  # newest cards shown
CARD_CHARS = 40_000  # text budget of one cards update (bodies and details)
CUT_CARD_CHARS = 240  # what an older card keeps of its body once the budget is spent
MAX_FILES = 200  # diffstat rows sent
DIFF_CHARS = 200_000  # a diff fetched on demand is cut here, with a note
CARD_TEXT_CHARS = 200_000  # "show all" of one card is cut here, with a note
DEFAULT_IDLE_AFTER = 120.0

WORDS: dict[str, str] = {s: s.replace("_", " ") for s in STATUSES}


def attr(run: Any, name: str, default: Any = None) -> Any:
    """``run.name``, or ``default`` where the run does not have it (yet), or it failed."""
    try:
        value = getattr(run, name)
    except Exception:
        return default
    return default if value is None and default is not None else value


def call(run: Any, name: str, *args: Any, default: Any = None) -> Any:
    """``run.name(*args)``, or ``default`` where the run has no such method (yet), or it failed."""
    fn = getattr(run, name, None)
    if not callable(fn):
        return default
    try:
        return fn(*args)
    except Exception:
        return default


def is_live(run: Any) -> bool:
    """True for a run of this kernel that can be controlled (``run.live``)."""
    live = attr(run, "live")
    if isinstance(live, bool):
        return live
    return type(run).__name__ == "Run"  # a core without ``live`` yet: only Run is live


def command_of(run: Any) -> str:
    """The command as a person would type it."""
    text = call(run, "command_text")
    if isinstance(text, str) and text:
        return text
    argv = list(attr(run, "argv", []) or [])
    if len(argv) == 3 and argv[1] == "-c":
        return str(argv[2])
    return shlex.join(str(a) for a in argv)


def short_path(path: object, base: str | None = None) -> str:
    """A path as short as it can be said: relative to ``base`` (or the kernel's folder), under ~,
    or its last two parts (``…/runs/0f3a``)."""
    text = str(path)
    for root in (base, os.getcwd()):
        if root:
            try:
                rel = os.path.relpath(text, root)
            except ValueError:
                continue
            if not rel.startswith(".."):
                return rel
    home = os.path.expanduser("~")
    if home != "/" and text.startswith(home + os.sep):
        return "~" + text[len(home):]
    parts = text.rstrip(os.sep).split(os.sep)
    return text if len(parts) <= 3 else "…" + os.sep + os.sep.join(parts[-2:])


def epoch_ms(when: Any) -> int | None:
    return None if when is None else int(when.timestamp() * 1000)


def signal_name(code: int) -> str:
    try:
        return signal.Signals(code).name
    except ValueError:
        return f"signal {code}"


def exit_text(run: Any) -> str:
    """How the root ended, in words: ``exit 0``, ``exit 3``, ``killed by SIGSEGV``; '' while live.

    A stopped run's -15/-9 is our own doing: the stop details say it, not this."""
    code = attr(run, "returncode")
    if not attr(run, "done", False) or code is None:
        return ""
    status = attr(run, "status", "")
    if code < 0:
        return "" if status in ("cancelled", "timed_out") else f"killed by {signal_name(-code)}"
    return f"exit {code}"


def stop_details(run: Any) -> dict[str, Any] | None:
    """``run.last_stop`` as the widget shows it: a headline, the facts, why and a note."""
    result = attr(run, "last_stop")
    if result is None:
        return None
    grace = attr(run, "grace", None)
    facts: list[str] = []
    if result.reason in ("stopped", "unkillable"):
        ms = result.elapsed_s * 1000
        facts.append(f"took {ms:.0f} ms" if ms < 1000 else f"took {result.elapsed_s:.2f} s")
        if result.escalated:
            facts.append(f"SIGKILL needed after {grace:g} s" if isinstance(grace, (int, float)) else "SIGKILL needed")
        elif result.signalled:
            facts.append("exited on SIGTERM")
        if result.signalled:
            facts.append(plural(result.signalled, "process", "processes") + " signalled")
        if result.swept:
            facts.append(f"{result.swept} found by the cookie sweep")
        if result.verified_by:
            facts.append(f"verified dead by {result.verified_by}")
    if result.unkillable:
        facts.append("survivors: " + ", ".join(str(s) for s in result.unkillable))
    if result.error:
        facts.append(f"error: {result.error}")
    headline = {
        "stopped": CAUSE_WORDS.get(result.cause, "stopped"),
        "unkillable": "NOT stopped: processes survived SIGKILL",
        "error": "the stop failed",
        "already_terminal": "already ended; nothing signalled",
    }.get(result.reason, result.reason)
    return {"headline": headline, "facts": facts, "cause": result.cause, "reason": result.reason,
            "escalated": bool(result.escalated), "verified_by": result.verified_by, "note": result.note,
            "elapsed_s": round(result.elapsed_s, 3), "stopped": bool(result.stopped)}


def info(run: Any) -> dict[str, Any]:
    """What rarely changes: identity, command, folders, format (sent on bind and on change)."""
    cwd = str(attr(run, "cwd", "") or "")
    tree = attr(run, "worktree")
    return {
        "id": attr(run, "id", ""), "name": attr(run, "name", ""), "command": command_of(run),
        "cwd": cwd, "cwd_short": short_path(cwd) if cwd else "",
        "log": short_path(attr(run, "log_dir", ""), cwd or None),
        "started": epoch_ms(attr(run, "started_at")), "pid": attr(run, "pid"),
        "format": attr(run, "format", "text") or "text", "live": is_live(run),
        "grace": attr(run, "grace"), "timeout": attr(run, "timeout"),
        "idle_after": float(attr(run, "idle_after", DEFAULT_IDLE_AFTER) or DEFAULT_IDLE_AFTER),
        "worktree": None if tree is None else {"path": short_path(tree.path), "branch": tree.branch},
        "ray": attr(run, "ray_job"),  # {address, job_id, node} for a Ray run, else None
    }


def state(run: Any, *, busy: bool = False, counted: int | None = None) -> dict[str, Any]:
    """What changes with events: status, end, stop, counters (``counted``: lines, when known)."""
    done = bool(attr(run, "done", False))
    status = str(attr(run, "status", ""))
    live = is_live(run)
    nbytes = int(attr(run, "bytes", 0) or 0)
    summary = attr(run, "agent")
    return {
        "status": status, "word": WORDS.get(status, status), "done": done, "busy": busy,
        "returncode": attr(run, "returncode"), "exit": exit_text(run),
        "ended": epoch_ms(attr(run, "ended_at")),
        "elapsed": round(float(attr(run, "elapsed", 0.0) or 0.0), 1) if done else None,
        "error": attr(run, "error"), "stop": stop_details(run) if done or status == "stopping" else None,
        "lines": counted, "lines_text": None if counted is None else plural(counted, "line"),
        "bytes": nbytes, "bytes_text": size(nbytes),
        "stdin": bool(attr(run, "stdin_open", False)) and live and not done,
        "waiting": attr(run, "waiting"),
        "can_resume": live and done and summary is not None and bool(getattr(summary, "session_id", None)),
    }


def activity(run: Any, now: float) -> float | None:
    """Wall time (epoch s) of the agent's last output, for the browser's idle badge; None once ended."""
    idle = attr(run, "idle_for")
    return None if idle is None or attr(run, "done", False) else round(now - float(idle), 0)


def window(lines: Sequence[tuple[str, str]], more: bool = False) -> list[dict[str, str]]:
    """The newest lines within the character budget, merged by stream: [{name, text}, ...].

    ``more``: the run wrote more than ``lines`` holds, so a first line says where it is.
    (No line count here: counting a flood's log at 10 Hz would starve the kernel.)"""
    keep: list[tuple[str, str]] = []
    used = 0
    for stream, text in reversed(lines):
        if len(text) > LINE_CHARS:
            text = text[:LINE_CHARS] + "\x1b[0m …"
        used += len(text) + 1
        if used > WINDOW_CHARS and keep:
            break
        keep.append((stream, text))
    keep.reverse()
    if more or len(keep) < len(lines):
        keep.insert(0, ("stdout", "\x1b[2m… earlier output not shown: run.output() has it all\x1b[0m"))
    outputs: list[dict[str, str]] = []
    for stream, text in keep:
        if outputs and outputs[-1]["name"] == stream:
            outputs[-1]["text"] += text + "\n"
        else:
            outputs.append({"name": stream, "text": text + "\n"})
    return outputs


def cards(items: Sequence[Any]) -> list[dict[str, Any]]:
    """The newest ``CARD_WINDOW`` cards, whole while the text budget lasts, then cut.

    A card whose body is shorter than its ``full_chars`` says so (``cut``), so the browser
    offers "show all", which asks the kernel for ``run.card_text(id)``."""
    out: list[dict[str, Any]] = []
    budget = CARD_CHARS
    for card in reversed(list(items)[-CARD_WINDOW:]):
        body, detail = card.body, card.detail
        if len(body) + len(detail) > budget:
            body, detail = body[:CUT_CARD_CHARS], detail[:CUT_CARD_CHARS]
        budget -= len(body) + len(detail) + len(card.title) + len(card.summary)
        if budget < 0 and out:
            break
        out.append({"id": card.id, "kind": card.kind, "title": card.title, "summary": card.summary,
                    "body": body, "detail": detail, "status": card.status, "full": card.full_chars,
                    "cut": len(body) < card.full_chars or len(detail) < len(card.detail)})
    out.reverse()
    return out


def agent(summary: Any) -> dict[str, Any] | None:
    """An AgentSummary's totals for the header (the final result cut short)."""
    if summary is None:
        return None
    usage = summary.usage
    result = summary.result
    return {"kind": summary.kind, "session_id": summary.session_id, "model": summary.model,
            "turns": summary.turns, "tool_calls": summary.tool_calls,
            "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
            "cached_input_tokens": usage.cached_input_tokens, "cost_usd": usage.cost_usd,
            "result": None if result is None else result[:2000], "is_error": bool(summary.is_error)}


def files(changes: Sequence[Any]) -> list[dict[str, Any]]:
    """A diffstat's rows (bounded), as the file list shows them."""
    return [{"path": c.path, "added": c.added, "removed": c.removed, "status": c.status,
             "old_path": c.old_path} for c in list(changes)[:MAX_FILES]]


def cut(text: str, limit: int, what: str) -> str:
    """``text`` cut at ``limit`` characters, with a line saying so."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… {what} cut at {limit:,} of {len(text):,} characters\n"
