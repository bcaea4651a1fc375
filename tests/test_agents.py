"""Agent-aware runs end to end, on the fake agents (notebooks/agents/bin/claude, codex, gemini).

The fakes replay streams captured from the real CLIs (notebooks/agents/fake_agent.py), so
these tests drive the whole path a real agent takes: a process under runstop_nb, its
byte-exact log, the transcript that parses it, ``run.agent`` and ``run.cards()``, and what
the widget is sent (``_runstate``). Reading streams alone (recognition rules, every card,
chunking, malformed lines, 10 MB events) is tested in test_agentstream.py. No network,
no CLI, no kernel: part of ``make unit``.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import psutil
import pytest

import runstop_nb
from runstop_nb import _runstate as rs
from runstop_nb._agents import BODY_CHARS

from .helpers import AGENTS, cookie_alive, wait_for

KINDS = ("claude", "codex", "gemini")
BIN = AGENTS / "bin"
STREAMS = AGENTS / "streams"
PROMPT = "Tidy up the notes."
FAST = {"FAKE_AGENT_DELAY": "0.01"}


def argv(kind: str, prompt: str = PROMPT) -> list[str]:
    """The real CLIs' scripted command lines, on the fake binaries."""
    binary = str(BIN / kind)
    if kind == "claude":
        return [binary, "-p", prompt, "--output-format", "stream-json", "--verbose"]
    if kind == "codex":
        return [binary, "exec", "--json", "--skip-git-repo-check", prompt]
    return [binary, "-p", prompt, "--output-format", "stream-json", "--yolo"]


def events(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


def of(evs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in evs if e.get("type") == kind]


def sums(kind: str, evs: list[dict[str, Any]]) -> tuple[int, int, int, float | None]:
    """(input with cached, output, cached, cost): the sum of the stream's final usage events."""
    if kind == "claude":
        total, cost = [0, 0, 0], None
        for e in of(evs, "result"):  # each result's usage is the run's so far; the last one counts
            u = e["usage"]
            total = [u["input_tokens"] + u["cache_creation_input_tokens"] + u["cache_read_input_tokens"],
                     u["output_tokens"], u["cache_read_input_tokens"]]
            cost = e["total_cost_usd"]
        return total[0], total[1], total[2], cost
    if kind == "codex":
        us = [e["usage"] for e in of(evs, "turn.completed")]
        return (sum(u["input_tokens"] for u in us), sum(u["output_tokens"] for u in us),
                sum(u["cached_input_tokens"] for u in us), None)
    st = [e["stats"] for e in of(evs, "result")]
    return sum(s["input_tokens"] for s in st), sum(s["output_tokens"] for s in st), sum(s["cached"] for s in st), None


def captured(kind: str, script: str) -> tuple[bytes, dict[str, Any]]:
    meta = json.loads((STREAMS / f"{kind}-{script}.json").read_text())
    return (STREAMS / f"{kind}-{script}.jsonl").read_bytes(), meta


def tree(pid: int | None) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid or -1)
        return [root, *root.children(recursive=True)]
    except (psutil.Error, ValueError):
        return []


def names(procs: list[psutil.Process]) -> list[str]:
    out = []
    for p in procs:
        try:
            out.append(p.name())
        except psutil.Error:
            continue
    return out


# ---- format="auto", cards, usage, through a run ------------------------------------------

SCRIPTS = ("tool_then_answer", "multi_turn", "failing_tool", "api_error")


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("kind", KINDS)
def test_fake_agent_run_is_recognised_rendered_and_totalled(kind: str, script: str) -> None:
    run = runstop_nb.start(argv(kind), env={**FAST, "FAKE_AGENT_SCRIPT": script}, name=f"fake-{kind}")
    stream, meta = captured(kind, script)
    status = run.wait(30)
    assert status == ("completed" if meta["exit_code"] == 0 else "failed")
    assert run.output("stdout").encode() == stream  # the log is byte-exact
    assert run.format == kind  # format="auto" recognised it from the stream
    evs = events(stream.decode())
    agent = run.agent
    assert agent is not None and agent.kind == kind and agent.session_id == meta["session_id"]
    u = agent.usage
    assert (u.input_tokens, u.output_tokens, u.cached_input_tokens, u.cost_usd) == sums(kind, evs)
    assert agent.is_error is (meta["exit_code"] != 0)
    # every event shows: the session, the agent's words, each tool call, the outcome
    cards = run.cards()
    kinds = [c.kind for c in cards]
    assert kinds[0] == "system" and kinds[-1] == ("error" if agent.is_error else "result")
    commands = {"failing_tool": 1, "tool_then_answer": 1, "multi_turn": 3, "api_error": 0}[script]
    tools = [c for c in cards if c.kind == "tool"]
    assert len(tools) == agent.tool_calls == commands
    if script == "failing_tool":
        # Claude and Codex mark the failed command; Gemini reports it as a success with the error text
        assert tools[0].status == ("ok" if kind == "gemini" else "error")
        assert "No such file or directory" in tools[0].detail
    if script != "api_error":
        assert any(c.kind == "text" and c.status == "info" for c in cards)
        assert cards[-1].summary and agent.result and agent.result.startswith(cards[-1].summary[:40])
    assert not any(c.kind == "raw" for c in cards)  # every line was an event
    # what the widget is sent: JSON, bounded
    sent = json.dumps({"cards": rs.cards(cards), "agent": rs.agent(agent), "state": rs.state(run)})
    assert len(sent) < 64 << 10


# ---- resume, through run.resume() --------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_resume_uses_each_clis_syntax_and_keeps_the_session(kind: str) -> None:
    first = runstop_nb.start(argv(kind), env=FAST, name=f"fake-{kind}", idle=30)
    assert first.wait(30) == "completed"
    assert first.agent is not None
    session = first.agent.session_id
    assert session
    again = first.resume("And once more.")
    expected = {
        "claude": [str(BIN / "claude"), "--output-format", "stream-json", "--verbose", "-p", "--resume", session,
                   "And once more."],
        "codex": [str(BIN / "codex"), "exec", "--json", "--skip-git-repo-check", "resume", session, "And once more."],
        "gemini": [str(BIN / "gemini"), "--resume", session, "-p", "And once more.", "--output-format",
                   "stream-json", "--yolo"],
    }[kind]
    assert again.argv == expected
    assert again.wait(30) == "completed"
    assert again.agent is not None and again.agent.session_id == session
    assert again.parent == first.id and again.name == first.name and again.spec.idle == 30  # options kept


def test_resume_of_claude_reading_stream_json_sends_the_prompt_on_stdin() -> None:
    cmd = [str(BIN / "claude"), "-p", "--input-format", "stream-json", "--output-format", "stream-json", "--verbose"]
    first = runstop_nb.start(cmd, env=FAST, stdin=True, name="fake-claude-io")
    first.send("Tidy up the notes.")  # wrapped as a stream-json user message
    wait_for(lambda: first.agent is not None and first.agent.result is not None, 20, "the first answer")
    first.close_stdin()
    assert first.wait(20) == "completed"
    assert first.agent is not None
    session = first.agent.session_id
    again = first.resume("And once more.")
    assert again.argv[-3:] == ["-p", "--resume", session] and "And once more." not in again.argv
    wait_for(lambda: again.agent is not None and again.agent.result is not None, 20, "the resumed answer")
    again.close_stdin()
    assert again.wait(20) == "completed"
    assert again.agent is not None and again.agent.session_id == session
    sent = (again.log_dir / "stdin.log").read_bytes()
    assert json.loads(sent)["message"]["content"] == "And once more."


# ---- budgets -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_budget_stop_on_a_fake_agent(kind: str) -> None:
    """Two tasks in one run: the first reports its usage, which exceeds the budget; the second
    (whose tool would sleep 60 s in a session of its own) must be stopped with its whole tree."""
    first, second = shlex.join(argv(kind)), shlex.join(argv(kind, "And the next task."))
    run = runstop_nb.start(f"{first}; FAKE_AGENT_HOLD=60 {second}", shell=True, env=FAST,
                           max_tokens=1000, grace=1, name=f"fake-{kind}")
    assert run.wait(30) == "cancelled", run.output()[-2000:]
    stop = run.last_stop
    assert stop is not None and stop.stopped and stop.cause == "budget" and stop.note
    assert stop.note.startswith("budget exceeded: ") and stop.note.endswith(" tokens, limit 1,000")
    figure = int(stop.note.split(": ")[1].split(" ")[0].replace(",", ""))
    assert figure > 1000
    if kind != "claude":  # only the first task's final figures were ever reported
        inp, out, _, _ = sums(kind, events(run.output("stdout")))
        assert figure == inp + out
    assert rs.stop_details(run)["headline"] == "budget exceeded"  # type: ignore[index]
    assert rs.state(run)["status"] == "cancelled"
    assert cookie_alive(run.spec.cookie) == []


# ---- idle --------------------------------------------------------------------------------


def test_idle_shows_without_a_status_change() -> None:
    """The badge is drawn by the browser from what the kernel sends: the time of the last
    output (``activity``) and the run's ``idle_after``; the status stays running."""
    run = runstop_nb.start(argv("codex"), env={**FAST, "FAKE_AGENT_HOLD": "30"}, idle=0.5, name="fake-idle")
    try:
        wait_for(lambda: "sleep" in names(tree(run.pid)), 20, "the tool's sleep")
        wait_for(lambda: (run.idle_for or 0) > 1.0, 10, "a second of silence")
        now = time.time()
        info, state, active = rs.info(run), rs.state(run), rs.activity(run, now)
        assert info["idle_after"] == 0.5
        assert active is not None and now - active >= info["idle_after"]  # what the badge computes
        assert state["status"] == "running" and not state["done"] and run.status == "running"
        run.stop(grace=0.5)
        assert rs.activity(run, time.time()) is None  # an ended run is never idle
    finally:
        if not run.done:
            run.stop(grace=0.5)


# ---- odd streams through a run -----------------------------------------------------------

WRITER = "import sys, time\nfor part in sys.argv[1:]:\n    sys.stdout.buffer.write(open(part, 'rb').read()); sys.stdout.flush(); time.sleep(0.05)\n"


def write_parts(tmp_path: Path, *parts: bytes) -> list[str]:
    """An agent that writes ``parts`` to stdout with pauses between them."""
    paths = []
    for n, data in enumerate(parts):
        path = tmp_path / f"part{n}"
        path.write_bytes(data)
        paths.append(str(path))
    return [sys.executable, "-c", WRITER, *paths]


@pytest.mark.parametrize("kind", KINDS)
def test_malformed_and_truncated_lines_are_shown_never_dropped(kind: str, tmp_path: Path) -> None:
    stream, _ = captured(kind, "tool_then_answer")
    lines = stream.splitlines(keepends=True)
    junk = b'{"type": "assistant", "message": {"id": \n' + b"not json at all\n"
    truncated = lines[-1][: len(lines[-1]) // 2]  # the final event, cut off mid-way, no newline
    data = [b"".join(lines[:2]), junk, b"".join(lines[2:-1]), truncated]
    run = runstop_nb.start(write_parts(tmp_path, *data), name=f"odd-{kind}")
    assert run.wait(30) == "completed"
    assert run.output("stdout").encode() == b"".join(data)
    assert run.format == kind
    raws = [c.body for c in run.cards() if c.kind == "raw"]
    assert raws[0] == junk.decode().rstrip("\n")
    assert raws[-1] == truncated.decode()
    shown = json.dumps(rs.cards(run.cards()))
    assert "not json at all" in shown


def test_a_10_mb_event_keeps_the_rendering_path_bounded(tmp_path: Path) -> None:
    stream, _ = captured("codex", "tool_then_answer")
    lines = stream.splitlines(keepends=True)
    huge = {"type": "item.completed", "item": {"id": "item_9", "type": "command_execution",
                                               "command": "/bin/bash -lc 'cat big.log'",
                                               "aggregated_output": "x" * (10 << 20), "exit_code": 0,
                                               "status": "completed"}}
    event = json.dumps(huge).encode() + b"\n"
    data = [b"".join(lines[:3]), event, b"".join(lines[3:])]
    tracemalloc.start()
    try:
        run = runstop_nb.start(write_parts(tmp_path, *data), name="huge")
        assert run.wait(60) == "completed"
        cards = run.cards()
        sent = json.dumps(rs.cards(cards))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert run.output("stdout").encode() == b"".join(data)
    assert run.agent is not None and run.agent.tool_calls == 2 and run.format == "codex"
    assert all(len(c.body) <= BODY_CHARS and len(c.detail) <= BODY_CHARS for c in cards)
    assert len(sent) < 64 << 10
    # parsing needs the one line (bytes, text, value: a few copies of 10 MB), and nothing holds it after
    print(f"\n10 MB event: peak traced memory {peak / 1e6:.1f} MB")
    assert peak < 8 * len(event), f"peak {peak / 1e6:.1f} MB for a {len(event) / 1e6:.1f} MB event"
    assert sum(len(c.body) + len(c.detail) for c in cards) < 20 * BODY_CHARS


def test_a_stream_that_switches_to_plain_text(tmp_path: Path) -> None:
    stream, _ = captured("gemini", "multi_turn")
    lines = stream.splitlines(keepends=True)
    plain = b"".join(b"plain build output line %d\n" % i for i in range(2000))
    run = runstop_nb.start(write_parts(tmp_path, b"".join(lines[:4]), plain, b"".join(lines[4:])), name="mixed")
    assert run.wait(30) == "completed"
    assert run.format == "gemini"
    cards = run.cards()
    raws = [c for c in cards if c.kind == "raw"]
    assert raws and raws[0].body.startswith("plain build output line 0\nplain build output line 1\n")
    assert cards[-1].kind == "result" and run.agent is not None and run.agent.tool_calls == 3
    assert sum(c.full_chars for c in raws) >= len(plain) - 2000  # every line is in a card (less newlines)
