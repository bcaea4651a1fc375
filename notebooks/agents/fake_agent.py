#!/usr/bin/env python3
"""A stand-in for the claude, codex and gemini CLIs: replays their real event streams.

The streams in ``streams/`` were captured from the real CLIs (the versions pinned in
scripts/agent-clis/package.json) running against runstop_nb's loopback model (see
runstop_nb.rehearsal and docs/agent-clis.md), so what this prints is what the real programs
print, without node, a network or keys. Call it as ``bin/claude``, ``bin/codex`` or
``bin/gemini`` (symlinks to this file), or as ``fake_agent.py KIND ...``, with the real
CLIs' scripted command lines:

    claude -p PROMPT --output-format stream-json --verbose      [--resume ID]
    claude -p --input-format stream-json --output-format stream-json --verbose   (prompts on stdin)
    codex exec --json PROMPT                                    codex exec --json resume ID PROMPT
    gemini -p PROMPT --output-format stream-json                [--resume ID]

Which capture is replayed: a ``[script:NAME]`` cue in the arguments (as the loopback model
reads it), else ``FAKE_AGENT_SCRIPT``, else ``tool_then_answer``. Scripts: tool_then_answer,
multi_turn, failing_tool (a shell command that fails), api_error (exits non-zero), and
long_tool (tool_then_answer whose tool runs 300 s unless ``FAKE_AGENT_HOLD`` says otherwise,
like the loopback model's ``sleep 300``). A resumed run replays the captured resume under
the session id it was given.

Environment: ``FAKE_AGENT_DELAY`` seconds between events (default 0.05);
``FAKE_AGENT_HOLD`` seconds the first tool call runs (default 0): like the real CLIs, the
fake starts the tool's ``sleep`` in a session of its own, so stopping it means stopping a
tree, not one process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.realpath(__file__))  # bin/claude etc. are symlinks to this file
STREAMS = os.path.join(HERE, "streams")
SCRIPTS = ("tool_then_answer", "multi_turn", "failing_tool", "api_error", "long_tool")
LONG_TOOL_HOLD = "300"
CUE = re.compile(r"\[script:([a-z_]+)\]")


def resume_id(kind: str, args: list[str]) -> str | None:
    """The session a command line resumes, in each CLI's own syntax."""
    word = "resume" if kind == "codex" else "--resume"
    if word in args and args.index(word) + 1 < len(args):
        return args[args.index(word) + 1]
    return None


def option(args: list[str], name: str) -> str | None:
    """The value of ``--name VALUE`` or ``--name=VALUE``."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def script_of(args: list[str]) -> str:
    for arg in args:
        cue = CUE.search(arg)
        if cue and cue.group(1) in SCRIPTS:
            return cue.group(1)
    name = os.environ.get("FAKE_AGENT_SCRIPT", "tool_then_answer")
    if name not in SCRIPTS:
        sys.exit(f"fake_agent: no captured script {name!r}; known: {', '.join(SCRIPTS)}")
    return name


def capture(kind: str, name: str, session: str | None) -> tuple[list[bytes], int]:
    """The captured stdout lines of ``kind-name`` (under ``session`` if given) and its exit code."""
    with open(os.path.join(STREAMS, f"{kind}-{name}.json")) as f:
        meta = json.load(f)
    with open(os.path.join(STREAMS, f"{kind}-{name}.jsonl"), "rb") as f:
        lines = f.read().splitlines(keepends=True)
    if session and meta.get("session_id"):
        lines = [line.replace(meta["session_id"].encode(), session.encode()) for line in lines]
    return lines, int(meta.get("exit_code") or 0)


def is_tool_call(line: bytes) -> bool:
    """True for the event that starts a shell tool (each CLI says it its own way)."""
    try:
        event = json.loads(line)
    except ValueError:
        return False
    kind = event.get("type")
    if kind == "assistant":
        return any(b.get("type") == "tool_use" for b in event.get("message", {}).get("content", []))
    if kind == "item.started":
        return event.get("item", {}).get("type") == "command_execution"
    return kind == "tool_use"


def replay(lines: list[bytes], delay: float, hold: float) -> None:
    out = sys.stdout.buffer
    held = False
    for line in lines:
        out.write(line)
        out.flush()
        if hold and not held and is_tool_call(line):
            held = True  # the tool's shell, in a session of its own, as the real CLIs start it
            subprocess.run(["sleep", str(hold)], start_new_session=True, check=False)
        time.sleep(delay)


def converse(args: list[str], delay: float, hold: float) -> int:
    """Claude reading ``--input-format stream-json``: one replayed turn per user message, until EOF."""
    session = resume_id("claude", args) or str(uuid.uuid4())
    lines, _ = capture("claude", "tool_then_answer", session)
    first = True
    for raw in sys.stdin:
        try:
            event = json.loads(raw)
            ok = event.get("type") == "user" and "content" in event["message"]
        except (ValueError, KeyError, TypeError, AttributeError):
            ok = False
        if not ok:
            print(f"fake_agent: not a user message: {raw.strip()[:200]}", file=sys.stderr, flush=True)
            continue
        replay(lines if first else lines[1:], delay, hold)  # the init line once
        first = False
    return 0


def main() -> int:
    kind = os.path.basename(sys.argv[0]).removesuffix(".py")
    args = sys.argv[1:]
    if kind == "fake_agent":
        if not args or args[0] not in ("claude", "codex", "gemini"):
            sys.exit("usage: fake_agent.py claude|codex|gemini ARGS...")
        kind, args = args[0], args[1:]
    delay = float(os.environ.get("FAKE_AGENT_DELAY", "0.05"))
    name = script_of(args)
    hold = float(os.environ.get("FAKE_AGENT_HOLD", LONG_TOOL_HOLD if name == "long_tool" else "0"))
    if kind == "claude" and option(args, "--input-format") == "stream-json":
        return converse(args, delay, hold)
    if kind == "codex" and "exec" not in args:
        sys.exit("fake_agent: only `codex exec --json ...` is replayed")
    session = resume_id(kind, args)
    replayed = "tool_then_answer-resume" if session else "tool_then_answer" if name == "long_tool" else name
    lines, code = capture(kind, replayed, session)
    replay(lines, delay, hold)
    return code


if __name__ == "__main__":
    sys.exit(main())
