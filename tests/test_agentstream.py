"""Agent CLIs' event streams read into summaries and cards (runstop_nb._agents).

The inline streams follow the field names of each CLI's source (docs/agent-clis.md) and the
quirks of real streams (docs/agent-clis.md); the captured real streams under
tests/fixtures/streams/ are read too, once they exist.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from runstop_nb._agents import BODY_CHARS, AgentSummary, Card, StreamReader, resume_argv, user_message_line
from runstop_nb._agents.board import FULL_TEXT_CHARS
from runstop_nb._agents.codex import shell_script
from runstop_nb._agents.detect import DETECT_LINES, recognise

STREAMS = Path(__file__).parent / "fixtures" / "streams"


def jl(*events: dict[str, Any]) -> bytes:
    """Return events as JSON lines, the way the CLIs print them."""
    return b"".join(json.dumps(e, separators=(",", ":")).encode() + b"\n" for e in events)


def read(data: bytes, fmt: Any = "auto", **kwargs: Any) -> StreamReader:
    reader = StreamReader(fmt, **kwargs)
    reader.feed(data)
    reader.close()
    return reader


def by_id(reader: StreamReader) -> dict[str, Card]:
    return {card.id: card for card in reader.cards()}


def summary_of(reader: StreamReader) -> AgentSummary:
    summary = reader.summary()
    assert summary is not None
    return summary


# -- the streams ----------------------------------------------------------------------

SID = "9f1c2d3e-0000-4000-8000-000000000001"


def _assistant(mid: str, block: dict[str, Any], usage: dict[str, int], parent: str | None = None) -> dict[str, Any]:
    return {
        "type": "assistant",
        "message": {
            "id": mid,
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [block],
            "stop_reason": None,
            "usage": usage,
        },
        "parent_tool_use_id": parent,
        "session_id": SID,
        "uuid": f"u-{mid}-{block['type']}",
    }


def _tool_result(tool_id: str, content: Any, is_error: bool = False) -> dict[str, Any]:
    return {
        "type": "user",
        "message": {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": content, "is_error": is_error}],
        },
        "parent_tool_use_id": None,
        "session_id": SID,
    }


U1 = {"input_tokens": 3, "cache_creation_input_tokens": 1200, "cache_read_input_tokens": 4000, "output_tokens": 2}
U1_FINAL = {**U1, "output_tokens": 85}  # a later line of the same message may report more output
U2 = {"input_tokens": 5, "cache_creation_input_tokens": 300, "cache_read_input_tokens": 5200, "output_tokens": 40}
U3 = {"input_tokens": 2, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 5500, "output_tokens": 12}

CLAUDE: list[dict[str, Any]] = [
    {
        "type": "system",
        "subtype": "init",
        "cwd": "/work/proj",
        "session_id": SID,
        "tools": ["Bash", "Edit", "Write", "Read", "TodoWrite"],
        "mcp_servers": [{"name": "files", "status": "connected"}],
        "model": "claude-sonnet-4-5-20250929",
        "permissionMode": "default",
        "claude_code_version": "2.1.197",
    },
    _assistant("msg_01", {"type": "thinking", "thinking": "Plan: list files.", "signature": "sig"}, U1),
    _assistant("msg_01", {"type": "text", "text": "I'll look at the files first."}, U1),
    _assistant("msg_01", {"type": "tool_use", "id": "toolu_01", "name": "Bash", "input": {"command": "ls -la"}}, U1_FINAL),
    _tool_result("toolu_01", "total 8\nREADME.md\nsrc"),
    _assistant(
        "msg_02",
        {"type": "tool_use", "id": "toolu_02", "name": "Edit",
         "input": {"file_path": "/work/proj/a.py", "old_string": "x = 1", "new_string": "x = 2"}},
        U2,
    ),
    _assistant(
        "msg_02",
        {"type": "tool_use", "id": "toolu_03", "name": "TodoWrite",
         "input": {"todos": [{"content": "Fix a.py", "status": "completed", "activeForm": "Fixing"},
                             {"content": "Run tests", "status": "in_progress", "activeForm": "Running"},
                             {"content": "Write docs", "status": "pending", "activeForm": "Writing"}]}},
        U2,
    ),
    _tool_result("toolu_02", [{"type": "text", "text": "The file /work/proj/a.py has been updated."}]),
    _tool_result("toolu_03", "Todos have been modified successfully."),
    {"type": "system", "subtype": "task_started", "task_id": "task-1", "description": "Explore", "uuid": "x",
     "session_id": SID},
    {"type": "rate_limit_event", "rate_limit_info": {"status": "allowed", "rateLimitType": "five_hour",
                                                     "resetsAt": 1760000000}, "uuid": "r", "session_id": SID},
    {"type": "stream_event", "event": {"type": "content_block_delta"}, "uuid": "se", "session_id": SID},
    _assistant(
        "msg_03",
        {"type": "tool_use", "id": "toolu_04", "name": "Write", "input": {"file_path": "/etc/x", "content": "y"}},
        U3,
    ),
    _tool_result("toolu_04", "Claude requested permissions to use Write, but you haven't granted it yet.", True),
    _assistant("msg_04", {"type": "text", "text": "All done: x is 2 now."}, U3),
    {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "duration_ms": 5120,
        "duration_api_ms": 4000,
        "num_turns": 4,
        "result": "All done: x is 2 now.",
        "session_id": SID,
        "total_cost_usd": 0.04321,
        "usage": {"input_tokens": 12, "cache_creation_input_tokens": 1500, "cache_read_input_tokens": 14700,
                  "output_tokens": 149},
        "permission_denials": [{"tool_name": "Write", "tool_use_id": "toolu_04",
                                "tool_input": {"file_path": "/etc/x", "content": "y"}}],
    },
]

CLAUDE_API_ERROR: list[dict[str, Any]] = [
    {"type": "system", "subtype": "init", "cwd": "/w", "session_id": SID, "tools": [], "mcp_servers": [],
     "model": "claude-sonnet-4-5", "permissionMode": "default"},
    {"type": "assistant", "message": {"id": "e1", "model": "<synthetic>", "role": "assistant",
                                      "content": [{"type": "text", "text": "API Error: 500 internal"}],
                                      "usage": {"input_tokens": 0, "output_tokens": 0}},
     "parent_tool_use_id": None, "session_id": SID, "error": "unknown"},
    {"type": "result", "subtype": "success", "is_error": True, "api_error_status": 500, "duration_ms": 10,
     "duration_api_ms": 0, "num_turns": 1, "result": "API Error: 500 internal", "session_id": SID,
     "total_cost_usd": 0, "usage": {"input_tokens": 0, "output_tokens": 0}, "permission_denials": []},
]

THREAD = "0199a213-81c0-7800-8aa1-bbab2a035a53"
CODEX: list[dict[str, Any]] = [
    {"type": "thread.started", "thread_id": THREAD},
    {"type": "turn.started"},
    {"type": "item.completed", "item": {"id": "item_0", "type": "reasoning", "text": "**Listing files**"}},
    {"type": "item.started", "item": {"id": "item_1", "type": "command_execution",
                                      "command": "/bin/bash -lc 'ls -la'", "aggregated_output": "",
                                      "exit_code": None, "status": "in_progress"}},
    {"type": "item.completed", "item": {"id": "item_1", "type": "command_execution",
                                        "command": "/bin/bash -lc 'ls -la'", "aggregated_output": "a\nb\n",
                                        "exit_code": 0, "status": "completed"}},
    {"type": "item.started", "item": {"id": "item_2", "type": "todo_list",
                                      "items": [{"text": "look", "completed": True},
                                                {"text": "fix", "completed": False}]}},
    {"type": "item.completed", "item": {"id": "item_3", "type": "file_change",
                                        "changes": [{"path": "src/a.py", "kind": "update"},
                                                    {"path": "src/b.py", "kind": "add"}],
                                        "status": "completed"}},
    {"type": "item.started", "item": {"id": "item_4", "type": "mcp_tool_call", "server": "docs", "tool": "search",
                                      "arguments": {"q": "x"}, "result": None, "error": None,
                                      "status": "in_progress"}},
    {"type": "item.completed", "item": {"id": "item_4", "type": "mcp_tool_call", "server": "docs", "tool": "search",
                                        "arguments": {"q": "x"},
                                        "result": {"content": [{"type": "text", "text": "found"}],
                                                   "structured_content": None},
                                        "error": None, "status": "completed"}},
    {"type": "item.started", "item": {"id": "item_5", "type": "web_search", "query": "python asyncio"}},
    {"type": "item.completed", "item": {"id": "item_5", "type": "web_search", "query": "python asyncio"}},
    {"type": "item.completed", "item": {"id": "item_6", "type": "command_execution",
                                        "command": "/bin/bash -lc 'false'", "aggregated_output": "",
                                        "exit_code": 1, "status": "failed"}},
    {"type": "item.completed", "item": {"id": "item_7", "type": "error", "message": "model rerouted"}},
    {"type": "item.updated", "item": {"id": "item_2", "type": "todo_list",
                                      "items": [{"text": "look", "completed": True},
                                                {"text": "fix", "completed": True}]}},
    {"type": "item.completed", "item": {"id": "item_8", "type": "agent_message", "text": "Fixed a.py and b.py."}},
    {"type": "item.completed", "item": {"id": "item_2", "type": "todo_list",
                                        "items": [{"text": "look", "completed": True},
                                                  {"text": "fix", "completed": True}]}},
    {"type": "turn.completed", "usage": {"input_tokens": 24763, "cached_input_tokens": 24448,
                                         "output_tokens": 122, "reasoning_output_tokens": 64}},
]
CODEX_FAILED: list[dict[str, Any]] = [
    {"type": "thread.started", "thread_id": THREAD},
    {"type": "turn.started"},
    {"type": "error", "message": "unexpected status 500 Internal Server Error"},
    {"type": "turn.failed", "error": {"message": "unexpected status 500 Internal Server Error"}},
]

GSID = "c0ffee00-1111-4222-8333-444455556666"


def _g(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "timestamp": "2026-01-05T10:00:00.000Z", **fields}


GEMINI: list[dict[str, Any]] = [
    _g("init", session_id=GSID, model="gemini-2.5-pro"),
    _g("message", role="user", content="List the files"),
    _g("message", role="assistant", content="I'll ", delta=True),
    _g("message", role="assistant", content="list them.", delta=True),
    _g("tool_use", tool_name="run_shell_command", tool_id="run_shell_command-1-a",
       parameters={"command": "ls", "description": "list"}),
    _g("tool_result", tool_id="run_shell_command-1-a", status="success", output="a\nb"),
    _g("tool_use", tool_name="write_file", tool_id="write_file-2-b", parameters={"file_path": "/w/x.txt", "content": "hi"}),
    _g("tool_use", tool_name="write_todos", tool_id="write_todos-3-c",
       parameters={"todos": [{"description": "write x", "status": "completed"},
                             {"description": "check", "status": "pending"}]}),
    _g("tool_result", tool_id="write_file-2-b", status="success", output="Successfully created x.txt"),
    _g("tool_result", tool_id="write_todos-3-c", status="success"),
    _g("tool_use", tool_name="run_shell_command", tool_id="run_shell_command-4-d", parameters={"command": "rm -rf /"}),
    _g("tool_result", tool_id="run_shell_command-4-d", status="error",
       error={"type": "policy_violation", "message": "Tool execution denied by policy."}),
    _g("error", severity="warning", message="Loop detected, stopping execution"),
    _g("message", role="assistant", content="Wrote x.txt.", delta=True),
    _g("result", status="success", stats={"total_tokens": 900, "input_tokens": 800, "output_tokens": 100,
                                          "cached": 300, "input": 500, "duration_ms": 4200, "tool_calls": 4}),
]
GEMINI_API_ERROR: list[dict[str, Any]] = [
    _g("init", session_id=GSID, model="gemini-2.5-pro"),
    _g("message", role="user", content="hi"),
    _g("result", status="error", error={"type": "ApiError", "message": "[API Error: 500]"},
       stats={"total_tokens": 0, "input_tokens": 0, "output_tokens": 0, "cached": 0, "input": 0,
              "duration_ms": 5, "tool_calls": 0}),
]

STREAMS_BY_KIND: dict[str, list[dict[str, Any]]] = {"claude": CLAUDE, "codex": CODEX, "gemini": GEMINI}


# -- recognition ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["claude", "codex", "gemini"])
def test_auto_recognises_each_cli(kind: str) -> None:
    reader = read(jl(*STREAMS_BY_KIND[kind]))
    assert reader.kind == kind
    assert summary_of(reader).kind == kind


@pytest.mark.parametrize("kind", ["claude", "codex", "gemini"])
def test_fixed_format_reads_without_detection(kind: str) -> None:
    auto = read(jl(*STREAMS_BY_KIND[kind]))
    fixed = read(jl(*STREAMS_BY_KIND[kind]), kind)
    assert fixed.kind == kind
    assert fixed.cards() == auto.cards()
    assert fixed.summary() == auto.summary()


def test_fixed_format_never_switches() -> None:
    reader = read(jl(*CODEX), "claude")
    assert reader.kind == "claude"
    assert {c.kind for c in reader.cards()} == {"raw"}  # codex events are unknown to claude
    text = read(jl(*CLAUDE), "text")
    assert text.kind == "text" and text.summary() is None


def test_banner_before_events_does_not_defeat_recognition() -> None:
    data = b"Loading configuration...\n\x1b[33mwarning: old node\x1b[0m\n\n" + jl(*CODEX)
    reader = read(data)
    assert reader.kind == "codex"
    first = reader.cards()[0]
    assert first.kind == "raw" and "Loading configuration" in first.body and "old node" in first.body


def test_unrecognised_json_is_held_until_the_decision() -> None:
    reader = read(jl({"note": "hello"}, *GEMINI))
    assert reader.kind == "gemini"
    assert reader.cards()[0].kind == "raw" and "hello" in reader.cards()[0].body


def kind_of(reader: StreamReader) -> str | None:
    return reader.kind


def test_plain_text_gives_up_after_the_window() -> None:
    reader = StreamReader()
    reader.feed(b"".join(f"line {i}\n".encode() for i in range(DETECT_LINES - 1)))
    assert kind_of(reader) is None and reader.summary() is None
    reader.feed(b"one more\n")
    assert kind_of(reader) == "text"
    reader.feed(jl(*CLAUDE))  # too late: text for good
    assert kind_of(reader) == "text" and reader.summary() is None
    assert all(c.kind == "raw" for c in reader.cards())


def test_a_big_first_text_line_gives_up_by_bytes() -> None:
    reader = StreamReader()
    reader.feed(b"x" * (70 << 10) + b"\n")
    assert reader.kind == "text"


def test_close_decides_an_undecided_stream() -> None:
    reader = StreamReader()
    reader.feed(b"hello\n")
    assert kind_of(reader) is None
    reader.close()
    assert kind_of(reader) == "text" and [c.body for c in reader.cards()] == ["hello"]


def test_recognise_rules() -> None:
    assert recognise({"type": "system", "subtype": "init", "session_id": "s"}) == "claude"
    assert recognise({"type": "result", "session_id": "s", "subtype": "success"}) == "claude"
    assert recognise({"type": "item.completed", "item": {}}) == "codex"
    assert recognise({"type": "init", "session_id": "s", "timestamp": "t"}) == "gemini"
    assert recognise({"type": "result", "status": "success", "timestamp": "t"}) == "gemini"
    assert recognise({"type": "error", "message": "x"}) is None
    assert recognise({"type": 3}) is None


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown stream format"):
        StreamReader("json")  # type: ignore[arg-type]


# -- Claude ---------------------------------------------------------------------------


def test_claude_cards() -> None:
    reader = read(jl(*CLAUDE))
    cards = by_id(reader)
    init = cards[f"init:{SID}"]
    assert init.kind == "system" and "claude-sonnet-4-5" in init.summary and "/work/proj" in init.summary
    assert "files (connected)" in init.body
    kinds = [c.kind for c in reader.cards()]
    assert "thinking" in kinds
    texts = [c for c in reader.cards() if c.kind == "text"]
    assert [c.body for c in texts] == ["I'll look at the files first.", "All done: x is 2 now."]
    bash = cards["toolu_01"]
    assert (bash.kind, bash.title, bash.summary, bash.status) == ("tool", "Bash", "ls -la", "ok")
    assert bash.detail == "total 8\nREADME.md\nsrc"
    edit = cards["toolu_02"]
    assert edit.kind == "file" and edit.summary == "/work/proj/a.py" and edit.status == "ok"
    assert edit.body == "- x = 1\n+ x = 2" and "update /work/proj/a.py" in edit.detail
    todo = cards["toolu_03"]
    assert todo.kind == "todo" and todo.summary == "1/3 done"
    assert todo.detail.splitlines()[:3] == ["[x] Fix a.py", "[~] Run tests", "[ ] Write docs"]
    denied = cards["toolu_04"]
    assert denied.status == "error" and "haven't granted" in denied.detail
    assert cards["task:task-1"].kind == "system"
    assert cards["rate-limit"].status == "info"
    result = reader.cards()[-1]
    assert (result.kind, result.status, result.body) == ("result", "ok", "All done: x is 2 now.")
    assert "4 turns" in result.detail and "$0.0432" in result.detail and "denied: Write /etc/x" in result.detail


def test_claude_tool_card_is_updated_in_place() -> None:
    reader = StreamReader()
    reader.feed(jl(*CLAUDE[:4]))
    before = [c.id for c in reader.cards()]
    assert by_id(reader)["toolu_01"].status == "running"
    reader.feed(jl(CLAUDE[4]))
    assert [c.id for c in reader.cards()] == before
    assert by_id(reader)["toolu_01"].status == "ok"


def _claude_expected(events: Iterable[dict[str, Any]]) -> tuple[int, int, int, float | None]:
    """Usage per the documented rule, computed independently: (input, output, cached, cost)."""
    per_message: dict[str, tuple[int, int, int]] = {}
    final = None
    cost = None
    for e in events:
        if e.get("type") == "assistant":
            u = e["message"].get("usage") or {}
            seen = (
                u.get("input_tokens", 0) + u.get("cache_creation_input_tokens", 0) + u.get("cache_read_input_tokens", 0),
                u.get("output_tokens", 0),
                u.get("cache_read_input_tokens", 0),
            )
            old = per_message.get(e["message"]["id"], (0, 0, 0))
            per_message[e["message"]["id"]] = (max(old[0], seen[0]), max(old[1], seen[1]), max(old[2], seen[2]))
        elif e.get("type") == "result":
            u = e["usage"]
            final = (
                u.get("input_tokens", 0) + u.get("cache_creation_input_tokens", 0) + u.get("cache_read_input_tokens", 0),
                u.get("output_tokens", 0),
                u.get("cache_read_input_tokens", 0),
            )
            per_message = {}
            cost = e.get("total_cost_usd")
    base = final or (0, 0, 0)
    live = [sum(v[i] for v in per_message.values()) for i in range(3)]
    return base[0] + live[0], base[1] + live[1], base[2] + live[2], cost


def test_claude_usage_dedups_split_messages_before_the_result() -> None:
    events = CLAUDE[:-1]
    usage = summary_of(read(jl(*events))).usage
    # msg_01 spans three lines and counts once, with its largest figures
    assert usage.output_tokens == 85 + 40 + 12 + 12
    assert usage.input_tokens == (3 + 1200 + 4000) + (5 + 300 + 5200) + 2 * (2 + 5500)
    assert usage.cached_input_tokens == 4000 + 5200 + 2 * 5500
    assert usage.cost_usd is None
    assert (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens, usage.cost_usd) == _claude_expected(
        events
    )


def test_claude_result_is_authoritative() -> None:
    summary = summary_of(read(jl(*CLAUDE)))
    u = summary.usage
    assert (u.input_tokens, u.output_tokens, u.cached_input_tokens, u.cost_usd) == (16212, 149, 14700, 0.04321)
    assert (u.input_tokens, u.output_tokens, u.cached_input_tokens, u.cost_usd) == _claude_expected(CLAUDE)
    assert summary.turns == 4 and summary.tool_calls == 4
    assert summary.result == "All done: x is 2 now." and not summary.is_error
    assert summary.model == "claude-sonnet-4-5-20250929" and summary.session_id == SID


def test_claude_turns_and_tools_before_the_result() -> None:
    summary = summary_of(read(jl(*CLAUDE[:-1])))
    assert summary.turns == 4  # msg_01..msg_04
    assert summary.tool_calls == 4
    assert summary.result == "All done: x is 2 now."


def test_claude_messages_after_a_result_add_to_it() -> None:
    later = _assistant("msg_09", {"type": "text", "text": "again"}, U3)
    summary = summary_of(read(jl(*CLAUDE, later)))
    assert summary.usage.output_tokens == 149 + 12
    assert summary.turns == 5


def test_claude_api_error() -> None:
    reader = read(jl(*CLAUDE_API_ERROR))
    summary = summary_of(reader)
    assert summary.is_error and summary.result == "API Error: 500 internal"
    assert summary.model == "claude-sonnet-4-5"  # not "<synthetic>"
    kinds = [c.kind for c in reader.cards()]
    assert kinds == ["system", "error", "error"]
    assert "API error status 500" in reader.cards()[-1].detail


def test_claude_waiting_rules() -> None:
    reader = StreamReader()
    reader.feed(jl(*CLAUDE[:13]))
    assert summary_of(reader).waiting is None
    reader.feed(jl(CLAUDE[13]))  # the denied Write
    assert summary_of(reader).waiting == "permission denied: Write"
    reader.feed(jl(CLAUDE[14]))  # the agent continues
    assert summary_of(reader).waiting is None
    reader.feed(jl(CLAUDE[15]))  # the result lists the denial
    assert summary_of(reader).waiting == "permission denied: Write /etc/x"
    reader.feed(jl(CLAUDE[0]))  # a new run
    assert summary_of(reader).waiting is None


def test_claude_api_retry_and_model_name() -> None:
    init = {**CLAUDE[0], "model": "claude-opus-4-8[1m]"}
    retry = {"type": "system", "subtype": "api_retry", "attempt": 1, "max_retries": 10, "retry_delay_ms": 597.8,
             "error_status": 500, "error": "server_error", "session_id": SID, "uuid": "r1"}
    reader = read(jl(init, retry, {**retry, "attempt": 2}, CLAUDE[2]))
    card = by_id(reader)["api_retry"]
    assert card.title == "Retrying API call" and card.summary == "attempt 2/10 after 500 server_error · next in 0.6 s"
    assert summary_of(reader).model == "claude-opus-4-8[1m]"  # init's name, not the message's


def test_claude_question_and_permission_request_wait() -> None:
    ask = _assistant(
        "msg_q",
        {"type": "tool_use", "id": "toolu_q", "name": "AskUserQuestion",
         "input": {"questions": [{"question": "Which database?", "header": "DB", "options": []}]}},
        U3,
    )
    control = {"type": "control_request", "request_id": "req-1",
               "request": {"subtype": "can_use_tool", "tool_name": "Bash", "input": {"command": "rm x"}}}
    reader = read(jl(CLAUDE[0], ask))
    assert summary_of(reader).waiting == "question: Which database?"
    reader = read(jl(CLAUDE[0], control))
    assert summary_of(reader).waiting == "permission requested: Bash rm x"
    assert by_id(reader)["control:req-1"].kind == "system"


def test_claude_other_events() -> None:
    events = [
        CLAUDE[0],
        {"type": "system", "subtype": "hook_started", "hook_id": "h1", "hook_name": "SessionStart",
         "session_id": SID},
        {"type": "system", "subtype": "hook_response", "hook_id": "h1", "hook_name": "SessionStart",
         "outcome": "success", "output": "ok", "session_id": SID},
        {"type": "system", "subtype": "task_notification", "task_id": "t9", "status": "completed",
         "summary": "Explored", "output_file": "/tmp/o", "session_id": SID, "uuid": "x"},
        {"type": "system", "subtype": "status", "status": "compacting", "session_id": SID},
        {"type": "system", "subtype": "brand_new", "session_id": SID},
        {"type": "user", "message": {"role": "user", "content": "Hello there"}, "session_id": SID,
         "parent_tool_use_id": None},
        _assistant("sub1", {"type": "text", "text": "from a sub-agent"}, U3, parent="toolu_x"),
        {"type": "surprise", "session_id": SID, "payload": [1, 2]},
    ]
    reader = read(jl(*events))
    cards = by_id(reader)
    assert cards["hook:h1"].status == "ok"
    assert cards["task:t9"].status == "ok" and cards["task:t9"].body == "Explored"
    assert cards["status"].title == "Status"
    assert any(c.title == "brand_new" for c in reader.cards())
    assert any(c.title == "User" and c.body == "Hello there" for c in reader.cards())
    assert any(c.title == "Sub-agent" for c in reader.cards())
    assert reader.cards()[-1].kind == "raw" and reader.cards()[-1].title == "surprise"
    summary = summary_of(reader)
    assert summary.turns == 0  # a sub-agent's message is not a main-thread turn
    assert summary.usage.output_tokens == 12  # …but its tokens count


# -- Codex ----------------------------------------------------------------------------


def test_codex_cards() -> None:
    reader = read(jl(*CODEX))
    cards = by_id(reader)
    assert cards[f"init:{THREAD}"].kind == "system" and THREAD in cards[f"init:{THREAD}"].body
    assert cards["item_0"].kind == "thinking"
    shell = cards["item_1"]
    assert (shell.kind, shell.title, shell.body, shell.status) == ("tool", "Shell", "ls -la", "ok")
    assert shell.detail == "a\nb\nexit 0"
    todo = cards["item_2"]
    assert todo.kind == "todo" and todo.status == "ok" and todo.summary == "2/2 done"
    assert todo.detail == "[x] look\n[x] fix"
    files = cards["item_3"]
    assert files.kind == "file" and files.title == "Edited 2 files" and files.summary == "src/a.py, src/b.py"
    assert files.detail == "update src/a.py\nadd src/b.py"
    mcp = cards["item_4"]
    assert mcp.title == "docs.search" and mcp.status == "ok" and mcp.detail == "found"
    assert cards["item_5"].title == "Web search" and cards["item_5"].summary == "python asyncio"
    assert cards["item_6"].status == "error" and cards["item_6"].detail.endswith("exit 1")
    assert cards["item_7"].kind == "error"
    assert cards["item_8"].kind == "text" and cards["item_8"].body == "Fixed a.py and b.py."
    result = reader.cards()[-1]
    assert result.kind == "result" and result.body == "Fixed a.py and b.py."
    assert "64 reasoning" in result.detail


def test_codex_summary_and_usage() -> None:
    summary = summary_of(read(jl(*CODEX, {"type": "turn.started"}, CODEX[-1])))
    expected = [e["usage"] for e in CODEX if e["type"] == "turn.completed"] * 2
    assert summary.usage.input_tokens == sum(u["input_tokens"] for u in expected)
    assert summary.usage.cached_input_tokens == sum(u["cached_input_tokens"] for u in expected)
    assert summary.usage.output_tokens == sum(u["output_tokens"] for u in expected)
    assert summary.usage.cost_usd is None
    assert summary.turns == 2 and summary.tool_calls == 5  # item_1, 3, 4, 5, 6
    assert summary.session_id == THREAD and summary.model is None
    assert summary.result == "Fixed a.py and b.py." and not summary.is_error


def test_codex_api_error() -> None:
    reader = read(jl(*CODEX_FAILED))
    summary = summary_of(reader)
    assert summary.is_error and summary.result is None
    assert [c.kind for c in reader.cards()] == ["system", "error", "error"]
    assert reader.cards()[-1].title == "Error" and "500" in reader.cards()[-1].body


def test_codex_waiting_rules() -> None:
    declined = {"type": "item.completed", "item": {"id": "item_d", "type": "command_execution",
                                                   "command": "/bin/bash -lc 'rm -rf build'",
                                                   "aggregated_output": "", "exit_code": None,
                                                   "status": "declined"}}
    message = {"type": "item.completed", "item": {"id": "item_m", "type": "agent_message", "text": "I could not."}}
    reader = StreamReader()
    reader.feed(jl(*CODEX[:2], declined))
    assert summary_of(reader).waiting == "declined: rm -rf build"
    assert by_id(reader)["item_d"].status == "error"
    reader.feed(jl(message))
    assert summary_of(reader).waiting is None
    reader.feed(jl(CODEX[-1]))  # the turn ends having been refused a command
    assert summary_of(reader).waiting == "declined: rm -rf build"
    reader.feed(jl({"type": "turn.started"}))
    assert summary_of(reader).waiting is None
    ask = {"type": "request_user_input", "id": "turn-1", "call_id": "call_9",
           "questions": [{"id": "q", "header": "Pick", "question": "Which branch?", "isOther": False,
                          "isSecret": False, "options": [{"label": "main", "description": "the main one"}]}]}
    reader.feed(jl(ask))
    assert summary_of(reader).waiting == "question: Which branch?"
    assert "main: the main one" in by_id(reader)["input:call_9"].body


def test_codex_plan_deltas_coalesce() -> None:
    deltas = [{"type": "item.plan.delta", "item_id": "plan_1", "delta": f"step {i}. "} for i in range(50)]
    reader = read(jl(CODEX[0], CODEX[1], *deltas, {"type": "item.completed", "item": {
        "id": "plan_1", "type": "plan", "text": "".join(d["delta"] for d in deltas)}}))
    plans = [c for c in reader.cards() if c.title == "Plan"]
    assert len(plans) == 1 and plans[0].body.startswith("step 0. step 1.")


def test_codex_reconnecting_is_a_notice_not_an_error() -> None:
    retry = {"type": "error", "message": "Reconnecting... 1/5 (stream disconnected before completion)"}
    reader = read(jl(*CODEX[:3], retry, *CODEX[3:]))
    assert not summary_of(reader).is_error
    notice = by_id(reader)["reconnecting"]
    assert (notice.kind, notice.title) == ("system", "Retrying API call")
    reader = read(jl(*CODEX[:2], retry))
    assert not summary_of(reader).is_error


def test_shell_script_unwraps_bash_lc() -> None:
    assert shell_script("/bin/bash -lc 'ls -la'") == "ls -la"
    assert shell_script("bash -lc \"echo 'hi' && cd /tmp\"") == "echo 'hi' && cd /tmp"
    assert shell_script("/bin/zsh -c 'a | b'") == "a | b"
    assert shell_script("ls -la") == "ls -la"
    assert shell_script("/bin/bash -lc 'unterminated") == "/bin/bash -lc 'unterminated"


# -- Gemini ---------------------------------------------------------------------------


def test_gemini_cards() -> None:
    reader = read(jl(*GEMINI))
    cards = reader.cards()
    assert cards[0].kind == "system" and cards[0].summary == "gemini-2.5-pro"
    assert cards[1].title == "User" and cards[1].body == "List the files"
    assert cards[2].kind == "text" and cards[2].body == "I'll list them."  # two deltas, one card
    by = by_id(reader)
    shell = by["run_shell_command-1-a"]
    assert (shell.kind, shell.summary, shell.status, shell.detail) == ("tool", "ls", "ok", "a\nb")
    write = by["write_file-2-b"]
    assert write.kind == "file" and write.summary == "/w/x.txt" and write.status == "ok"
    assert "write /w/x.txt" in write.detail and "Successfully created" in write.detail
    todo = by["write_todos-3-c"]
    assert todo.kind == "todo" and todo.detail == "[x] write x\n[ ] check"
    denied = by["run_shell_command-4-d"]
    assert denied.status == "error" and "denied by policy" in denied.detail
    warning = next(c for c in cards if c.title == "Warning")
    assert warning.kind == "error" and warning.status == "info"
    assert cards[-2].kind == "text" and cards[-2].body == "Wrote x.txt."
    assert cards[-1].kind == "result" and cards[-1].body == "Wrote x.txt."
    assert "4.2 s" in cards[-1].detail


def test_gemini_summary_and_usage() -> None:
    summary = summary_of(read(jl(*GEMINI)))
    stats = GEMINI[-1]["stats"]
    assert summary.usage.input_tokens == stats["input_tokens"]
    assert summary.usage.output_tokens == stats["output_tokens"]
    assert summary.usage.cached_input_tokens == stats["cached"]
    assert summary.usage.cost_usd is None
    assert summary.tool_calls == 4 and summary.turns == 4  # four model responses
    assert summary.session_id == GSID and summary.model == "gemini-2.5-pro"
    assert summary.result == "Wrote x.txt." and not summary.is_error


def test_gemini_counts_before_the_result() -> None:
    summary = summary_of(read(jl(*GEMINI[:-1])))
    assert summary.tool_calls == 4 and summary.usage.input_tokens == 0
    assert summary.is_error is False  # a warning is not an error


def test_gemini_api_error() -> None:
    reader = read(jl(*GEMINI_API_ERROR))
    summary = summary_of(reader)
    assert summary.is_error and summary.result is None
    assert reader.cards()[-1].kind == "error" and "[API Error: 500]" in reader.cards()[-1].body


def test_gemini_waiting_rules() -> None:
    reader = StreamReader()
    reader.feed(jl(*GEMINI[:12]))
    assert summary_of(reader).waiting == "permission denied: run_shell_command (Tool execution denied by policy.)"
    reader.feed(jl(*GEMINI[12:14]))
    assert summary_of(reader).waiting is None


def test_gemini_auto_model_is_named_from_the_stats() -> None:
    models = {"gemini-3.5-flash-lite": {"total_tokens": 1218}, "gemini-3.8-flash": {"total_tokens": 5286}}
    events = [_g("init", session_id=GSID, model="auto"), *GEMINI[1:-1],
              _g("result", status="success", stats={**GEMINI[-1]["stats"], "models": models})]
    assert summary_of(read(jl(*events))).model == "gemini-3.8-flash"
    assert summary_of(read(jl(*events[:-1]))).model == "auto"
    assert summary_of(read(jl(*GEMINI))).model == "gemini-2.5-pro"  # a named model stays


def test_gemini_severe_error_event() -> None:
    summary = summary_of(read(jl(GEMINI[0], _g("error", severity="error", message="Maximum session turns exceeded"))))
    assert summary.is_error


# -- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["claude", "codex", "gemini"])
def test_malformed_and_truncated_lines_become_raw_cards(kind: str) -> None:
    events = STREAMS_BY_KIND[kind]
    good = jl(*events)
    junk = b'{"type": "assistant", "message": {"id": \n' + b"\xff\xfe not utf-8 \xc3\n" + b"[1, 2, 3]\n" + b'"str"\n'
    cut_short = json.dumps(events[-1]).encode()[:-7]  # the last event, unterminated and truncated
    reader = read(jl(events[0]) + junk + good[len(jl(events[0])) :] + cut_short)
    assert reader.kind == kind
    raws = [c for c in reader.cards() if c.kind == "raw"]
    assert len(raws) == 2  # the junk block (coalesced) and the truncated tail
    assert "not utf-8" in raws[0].body and "\ufffd" in raws[0].body and "[1, 2, 3]" in raws[0].body
    assert raws[1].body == cut_short.decode()
    assert summary_of(reader).session_id is not None


@pytest.mark.parametrize("kind", ["claude", "codex", "gemini"])
def test_events_with_wrong_field_types_do_not_break_the_stream(kind: str) -> None:
    weird: list[dict[str, Any]] = []
    for event in STREAMS_BY_KIND[kind]:
        for key in event:
            if key != "type":
                weird.append({**event, key: None})
                weird.append({**event, key: [1, {"x": None}]})
                weird.append({**event, key: "text"})
    reader = read(jl(STREAMS_BY_KIND[kind][0], *weird))
    assert reader.kind == kind
    assert not any(c.body.startswith("[unreadable event") for c in reader.cards())
    json.dumps(summary_of(reader).as_dict())


def test_a_parser_error_shows_the_line() -> None:
    def broken(event: dict[str, Any]) -> bool:
        raise ZeroDivisionError("division by zero")

    reader = StreamReader("claude")
    assert reader._parser is not None
    reader._parser.handle = broken  # type: ignore[method-assign]
    reader.feed(jl(CLAUDE[0]))
    assert reader.cards()[0].body.startswith("[unreadable event: ZeroDivisionError")


@pytest.mark.parametrize("kind", ["claude", "codex", "gemini"])
def test_a_10_mb_event_is_cut(kind: str) -> None:
    huge = "x" * (10 << 20)
    event = {
        "claude": _tool_result("toolu_01", huge),
        "codex": {"type": "item.completed", "item": {"id": "item_1", "type": "command_execution",
                                                     "command": "cat big", "aggregated_output": huge,
                                                     "exit_code": 0, "status": "completed"}},
        "gemini": _g("message", role="assistant", content=huge, delta=True),
    }[kind]
    events = STREAMS_BY_KIND[kind]
    data = jl(*events[:4], event)
    start = time.perf_counter()
    reader = read(data)
    assert time.perf_counter() - start < 2.0
    for card in reader.cards():
        assert len(card.body) <= BODY_CHARS and len(card.detail) <= BODY_CHARS
        assert len(card.summary) <= 200
    big = {"claude": "toolu_01", "codex": "item_1"}.get(kind)
    if big is not None:
        assert by_id(reader)[big].detail.endswith("…")
        assert reader.full_detail(big) is None or len(reader.full_detail(big) or "") <= FULL_TEXT_CHARS
    else:
        card = reader.cards()[-1]  # the huge delta joined the message being streamed
        assert card.full_chars == len("I'll list them.") + len(huge) and reader.full_body(card.id) is None
    assert len(summary_of(reader).result or "") <= 65_536


def test_a_line_longer_than_max_line_is_cut_into_a_raw_card() -> None:
    reader = StreamReader(max_line=1000)
    reader.feed(jl(*CODEX[:2]))
    head = b'{"type": "item.completed", "item": {"text": "'
    reader.feed(head + b"y" * 5000)
    reader.feed(b"y" * 5000 + b'"}}\n')
    reader.feed(jl(*CODEX[2:]))
    reader.close()
    over = [c for c in reader.cards() if c.title == "Over-long line"]
    assert len(over) == 1 and f"{len(head) + 10_003:,} bytes" in over[0].body and len(over[0].body) <= BODY_CHARS
    assert summary_of(reader).usage.input_tokens == 24763


def test_an_over_long_line_is_not_held_in_memory() -> None:
    reader = StreamReader("text", max_line=20_000)
    for _ in range(50):
        reader.feed(b"z" * 1000)
    assert len(reader._partial) <= 4 * BODY_CHARS + 4
    reader.feed(b"\nnext\n")
    over, after = reader.cards()
    assert over.title == "Over-long line" and "50,000 bytes" in over.body and after.body == "next"


def test_a_stream_that_switches_to_plain_text() -> None:
    reader = StreamReader(max_cards=500)
    reader.feed(jl(*CLAUDE[:5]))
    reader.feed(b"".join(f"plain output line {i}\n".encode() for i in range(10_000)))
    reader.feed(jl(*CLAUDE[5:]))
    reader.close()
    raws = [c for c in reader.cards() if c.kind == "raw"]
    assert 100 <= len(raws) <= 400  # coalesced, not one card per line
    assert raws[0].body.startswith("plain output line 0\nplain output line 1\n")
    assert reader.kind == "claude" and summary_of(reader).turns == 4
    assert reader.cards()[-1].kind == "result"


def test_text_stream_cards() -> None:
    reader = read(b"".join(f"line {i}\r\n".encode() for i in range(300)), "text")
    assert reader.summary() is None
    assert reader.cards()[0].body.splitlines()[:2] == ["line 0", "line 1"]
    assert sum(c.body.count("\n") + 1 for c in reader.cards()) == 300


# -- chunking -----------------------------------------------------------------------------


def _snapshot(reader: StreamReader) -> tuple[Any, ...]:
    return reader.kind, reader.summary(), reader.cards()


@pytest.mark.heavy
@pytest.mark.parametrize("kind", ["claude", "codex", "gemini"])
def test_chunking_at_every_byte_boundary_gives_the_same_result(kind: str) -> None:
    data = b"banner\n" + jl(*STREAMS_BY_KIND[kind]) + b"tail \xe2\x82\xac without newline"
    whole = _snapshot(read(data))
    for split in range(1, len(data)):
        reader = StreamReader()
        reader.feed(data[:split])
        reader.feed(data[split:])
        reader.close()
        assert _snapshot(reader) == whole, f"split at byte {split}"
    byte_by_byte = StreamReader()
    for i in range(len(data)):
        byte_by_byte.feed(data[i : i + 1])
    byte_by_byte.close()
    assert _snapshot(byte_by_byte) == whole


def test_version_grows_on_changes_only() -> None:
    reader = StreamReader()
    assert reader.version == 0
    reader.feed(jl(CLAUDE[0]))
    v = reader.version
    assert v > 0
    reader.feed(jl(CLAUDE[11]))  # a stream_event: nothing to show
    assert reader.version == v
    reader.feed(b"\n\n")
    assert reader.version == v
    reader.feed(jl(CLAUDE[1]))
    assert reader.version > v


# -- bounds and speed -------------------------------------------------------------------------


@pytest.mark.heavy
def test_100000_events_are_fast_and_bounded() -> None:
    events = [CODEX[0], CODEX[1]]
    for i in range(100_000):
        events.append({"type": "item.completed", "item": {"id": f"item_{i}", "type": "agent_message",
                                                          "text": f"message {i}"}})
    data = jl(*events)
    reader = StreamReader(max_cards=200)
    start = time.perf_counter()
    for at in range(0, len(data), 65536):
        reader.feed(data[at : at + 65536])
    reader.close()
    elapsed = time.perf_counter() - start
    assert elapsed < 4.0, f"{elapsed:.2f} s"
    cards = reader.cards()
    assert len(cards) == 200
    assert cards[-1].body == "message 99999" and cards[0].body == "message 99800"


@pytest.mark.heavy
def test_100000_tool_calls_keep_bounded_state() -> None:
    reader = StreamReader("claude", max_cards=50)
    for i in range(20_000):
        tool = f"toolu_{i}"
        reader.feed(jl(_assistant(f"m{i}", {"type": "tool_use", "id": tool, "name": "Bash",
                                            "input": {"command": f"echo {i}"}}, U3),
                       _tool_result(tool, str(i))))
    summary = summary_of(reader)
    assert summary.tool_calls == 20_000 and summary.turns == 20_000
    assert summary.usage.output_tokens == 12 * 20_000
    assert len(reader.cards()) == 50 and all(c.status == "ok" for c in reader.cards())
    parser = reader._parser
    assert parser is not None and len(parser._tools) <= 4096


def test_full_bodies_are_kept_within_a_megabyte() -> None:
    reader = StreamReader("codex")
    texts = {}
    for i in range(30):
        text = f"{i}:" + "z" * 100_000
        texts[f"item_{i}"] = text
        reader.feed(jl({"type": "item.completed", "item": {"id": f"item_{i}", "type": "agent_message", "text": text}}))
    held = [key for key in texts if reader.full_body(key) is not None]
    assert 5 <= len(held) <= 10 and held == list(texts)[-len(held) :]
    assert all(reader.full_body(key) == texts[key] for key in held)
    assert all(by_id(reader)[key].full_chars == len(texts[key]) for key in texts)
    assert reader.full_body("nope") is None


def test_full_body_of_a_short_card_is_its_body() -> None:
    reader = read(jl(*GEMINI))
    card = reader.cards()[2]
    assert reader.full_body(card.id) == card.body == "I'll list them."


def test_gemini_many_deltas_coalesce_cheaply() -> None:
    deltas = [_g("message", role="assistant", content=f"w{i} ", delta=True) for i in range(20_000)]
    start = time.perf_counter()
    reader = read(jl(GEMINI[0], *deltas))
    assert time.perf_counter() - start < 2.0
    cards = reader.cards()
    assert len(cards) == 2
    full = "".join(f"w{i} " for i in range(20_000))
    assert cards[1].full_chars == len(full) and reader.full_body(cards[1].id) == full
    assert summary_of(reader).result == full[:65_535] + "…"


def test_summary_as_dict_is_json() -> None:
    for kind, events in STREAMS_BY_KIND.items():
        row = summary_of(read(jl(*events))).as_dict()
        assert row["kind"] == kind
        assert json.loads(json.dumps(row)) == row
        usage = row["usage"]
        assert isinstance(usage, dict)
        assert set(usage) == {"input_tokens", "output_tokens", "cached_input_tokens", "cost_usd"}


# -- resume and input --------------------------------------------------------------------------


def test_resume_claude() -> None:
    argv = ["claude", "-p", "fix the bug", "--output-format", "stream-json", "--verbose", "--allowedTools", "Bash",
            "Edit", "--model", "sonnet"]
    assert resume_argv("claude", argv, "S1", "and the tests") == [
        "claude", "--output-format", "stream-json", "--verbose", "--allowedTools", "Bash", "Edit", "--model",
        "sonnet", "-p", "--resume", "S1", "and the tests",
    ]


def test_resume_claude_replaces_an_earlier_resume_and_keeps_paths() -> None:
    argv = ["/opt/node_modules/.bin/claude", "--print", "--resume", "OLD", "--output-format=stream-json",
            "--verbose", "old prompt"]
    assert resume_argv("claude", argv, "NEW", "-dash prompt") == [
        "/opt/node_modules/.bin/claude", "--output-format=stream-json", "--verbose", "-p", "--resume", "NEW", "--",
        "-dash prompt",
    ]


def test_resume_claude_with_stream_json_input_leaves_the_prompt_to_stdin() -> None:
    argv = ["claude", "-p", "--input-format", "stream-json", "--output-format", "stream-json", "--verbose"]
    assert resume_argv("claude", argv, "S", "hi") == [
        "claude", "--input-format", "stream-json", "--output-format", "stream-json", "--verbose", "-p", "--resume",
        "S",
    ]


def test_resume_codex() -> None:
    argv = ["codex", "exec", "--json", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox",
            "-m", "gpt-5.5", "-C", "/w", "do it"]
    assert resume_argv("codex", argv, "T1", "more") == [
        "codex", "exec", "--json", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox", "-m",
        "gpt-5.5", "-C", "/w", "resume", "T1", "more",
    ]


def test_resume_codex_root_options_and_an_earlier_resume() -> None:
    argv = ["npx", "codex", "-c", "model=x", "exec", "--json", "resume", "OLD", "old prompt"]
    assert resume_argv("codex", argv, "T2", "next") == [
        "npx", "codex", "-c", "model=x", "exec", "--json", "resume", "T2", "next",
    ]


def test_resume_gemini() -> None:
    argv = ["gemini", "-p", "do it", "--output-format", "stream-json", "--yolo", "-m", "gemini-2.5-pro"]
    assert resume_argv("gemini", argv, "G1", "again") == [
        "gemini", "--resume", "G1", "-p", "again", "--output-format", "stream-json", "--yolo", "-m",
        "gemini-2.5-pro",
    ]
    positional = ["gemini", "--output-format", "stream-json", "-r", "latest", "a query"]
    assert resume_argv("gemini", positional, "G2", "-x") == [
        "gemini", "--resume", "G2", "--prompt=-x", "--output-format", "stream-json",
    ]


@pytest.mark.parametrize(
    ("kind", "argv", "message"),
    [
        ("claude", ["claude", "fix it"], "no -p/--print"),
        ("claude", ["python", "agent.py", "-p"], "no 'claude' program"),
        ("claude", ["claude", "mcp", "list", "-p"], "subcommand"),
        ("codex", ["codex", "do it"], "no 'exec'"),
        ("codex", ["codex", "exec", "review", "--json"], "codex exec review"),
        ("gemini", ["gemini"], "no -p/--prompt"),
        ("gemini", ["gemini", "-i", "hello"], "prompt-interactive"),
        ("text", ["bash", "-c", "x"], "only claude, codex and gemini"),
        ("claude", ["claude", "-p", "x"], "no session id"),
    ],
)
def test_resume_refuses_what_it_does_not_recognise(kind: str, argv: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        resume_argv(kind, argv, "" if message == "no session id" else "S", "p")
    assert "\n" not in str(info.value)


def test_user_message_line() -> None:
    line = user_message_line("hello — ünïcode\nsecond line")
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {
        "type": "user",
        "message": {"role": "user", "content": "hello — ünïcode\nsecond line"},
        "parent_tool_use_id": None,
        "session_id": "default",
    }
    assert json.loads(user_message_line("x", session_id=SID))["session_id"] == SID


# -- the captured real streams ---------------------------------------------------------------------

CAPTURES = sorted(STREAMS.glob("*.jsonl")) if STREAMS.is_dir() else []
needs_captures = pytest.mark.skipif(not CAPTURES, reason="no captured streams in tests/fixtures/streams yet")


def _meta(path: Path) -> dict[str, Any]:
    meta = path.with_name(path.name.removesuffix(".jsonl") + ".meta.json")
    return json.loads(meta.read_text()) if meta.exists() else {}


def _events(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def _expected(kind: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary each module docstring's rules give, computed here from the events alone."""
    if kind == "claude":
        results = [e for e in events if e["type"] == "result"]
        tools = {b["id"] for e in events if e["type"] == "assistant" for b in e["message"]["content"]
                 if b["type"] == "tool_use"}
        return {"usage": _claude_expected(events), "tool_calls": len(tools), "turns": results[-1]["num_turns"],
                "result": results[-1]["result"], "is_error": results[-1]["is_error"]}
    if kind == "codex":
        done = [e["usage"] for e in events if e["type"] == "turn.completed"]
        tools = {e["item"]["id"] for e in events if e["type"].startswith("item.")
                 and e["item"]["type"] in ("command_execution", "file_change", "mcp_tool_call", "web_search")}
        messages = [e["item"]["text"] for e in events if e["type"] == "item.completed"
                    and e["item"]["type"] == "agent_message"]
        usage = (sum(u["input_tokens"] for u in done), sum(u["output_tokens"] for u in done),
                 sum(u["cached_input_tokens"] for u in done), None)
        return {"usage": usage, "tool_calls": len(tools), "turns": sum(e["type"] == "turn.started" for e in events),
                "result": messages[-1] if messages else None,
                "is_error": any(e["type"] == "turn.failed" for e in events)}
    stats = [e["stats"] for e in events if e["type"] == "result"]
    turns, responding, text, last = 0, False, "", None
    for e in events:
        if (e["type"] == "message" and e["role"] == "assistant") or e["type"] == "tool_use":
            turns += not responding
            responding = True
        else:
            responding = False
        if e["type"] == "message" and e["role"] == "assistant":
            text += e["content"]
            last = text
        elif e["type"] != "result":
            text = ""
    usage = (sum(s["input_tokens"] for s in stats), sum(s["output_tokens"] for s in stats),
             sum(s["cached"] for s in stats), None)
    return {"usage": usage, "tool_calls": sum(s["tool_calls"] for s in stats), "turns": turns, "result": last,
            "is_error": events[-1]["status"] == "error"}


@needs_captures
@pytest.mark.parametrize("path", CAPTURES, ids=[p.name for p in CAPTURES])
def test_captured_stream_reads_every_line(path: Path) -> None:
    data = path.read_bytes()
    kind = path.name.split("-", 1)[0]
    reader = read(data)
    assert reader.kind == kind
    assert read(data, kind).cards() == reader.cards()
    every_line_json = all(line.startswith(b"{") for line in data.splitlines() if line.strip())
    assert not every_line_json or not any(c.kind == "raw" for c in reader.cards())
    assert not any(c.body.startswith("[unreadable event") for c in reader.cards())
    assert reader.cards()[0].kind == "system" and reader.cards()[0].title == "Session started"
    assert reader.cards()[-1].kind in ("result", "error")
    chunked = StreamReader()
    rng = random.Random(path.name)
    at = 0
    while at < len(data):
        size = rng.randint(1, 64)
        chunked.feed(data[at : at + size])
        at += size
    chunked.close()
    assert _snapshot(chunked) == _snapshot(reader)


@needs_captures
@pytest.mark.parametrize("path", CAPTURES, ids=[p.name for p in CAPTURES])
def test_captured_stream_summary_follows_the_rules(path: Path) -> None:
    data = path.read_bytes()
    kind = path.name.split("-", 1)[0]
    summary = summary_of(read(data))
    expected = _expected(kind, _events(data))
    usage = summary.usage
    assert (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens, usage.cost_usd) == expected["usage"]
    assert summary.tool_calls == expected["tool_calls"]
    assert summary.turns == expected["turns"]
    assert summary.result == expected["result"]
    assert summary.is_error is expected["is_error"]
    assert summary.waiting is None
    meta = _meta(path)
    if meta:
        assert summary.session_id == meta["session_id"]
        assert summary.is_error is (meta["exit_code"] != 0)
    json.dumps(summary.as_dict())


RESUMES = [p for p in CAPTURES if _meta(p).get("resume_of")]


@pytest.mark.skipif(not RESUMES, reason="no captured resumed runs yet")
@pytest.mark.parametrize("path", RESUMES, ids=[p.name for p in RESUMES])
def test_resume_argv_matches_the_captured_resume(path: Path) -> None:
    meta = _meta(path)
    original = _meta(path.with_name(meta["resume_of"] + ".jsonl"))
    kind = meta["cli"]
    prompt = meta["argv"][-1] if kind == "codex" else meta["argv"][meta["argv"].index("-p") + 1]
    ours = resume_argv(kind, original["argv"], original["session_id"], prompt)
    # the same words as the command that resumed for real; the order is each CLI's own syntax
    assert sorted(ours) == sorted(meta["argv"])
    assert ours[0] == meta["argv"][0] and ours[-1 if kind != "gemini" else 4] == prompt
    word = "--resume" if kind != "codex" else "resume"
    assert ours[ours.index(word) + 1] == original["session_id"]
    if kind == "gemini":
        assert ours == meta["argv"]
    # and the resumed stream continues the same session
    assert summary_of(read(path.read_bytes())).session_id == original["session_id"]
