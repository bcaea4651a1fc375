"""The loopback model and the CLI rehearsal kit.

The first part talks HTTP to the model with urllib and needs no node. The tests marked
``clis`` run the real Claude Code, Codex and Gemini CLIs (``scripts/clis.sh`` installs them)
against it and check their real event streams; they skip when a CLI is not installed.
Nothing here connects anywhere but 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from runstop_nb import rehearsal
from runstop_nb.rehearsal import KINDS, CliKind, LoopbackModel, cli_argv, cli_env, cli_path, script_steps

from .capture_streams import CliRun, capture, run_cli
from .helpers import created_at, name_of

# ---- talking to the model ------------------------------------------------------------------

Frames = list[tuple[str | None, dict[str, Any]]]


def call(model: LoopbackModel, method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection to the model: status, headers, body bytes."""
    conn = http.client.HTTPConnection(rehearsal.HOST, model.port, timeout=30)
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def frames(raw: bytes) -> Frames:
    """Server-sent events as (event name or None, parsed data); every frame must be well formed."""
    text = raw.decode()
    assert text.endswith("\n\n"), "an SSE stream ends with a blank line"
    out: Frames = []
    for block in text[:-2].split("\n\n"):
        lines = block.split("\n")
        name = lines[0][len("event: "):] if lines[0].startswith("event: ") else None
        data = [ln for ln in lines if ln.startswith("data: ")]
        assert len(data) == 1 and len(lines) == (2 if name else 1), f"malformed frame {block!r}"
        out.append((name, json.loads(data[0][len("data: "):])))
    return out


def anthropic_body(*history: dict[str, Any], stream: bool = True, prompt: str = "hi") -> dict[str, Any]:
    return {"model": "claude-test", "max_tokens": 1000, "stream": stream,
            "tools": [{"name": "Bash", "input_schema": {"type": "object"}}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]}, *history]}


def anthropic_round(n: int) -> list[dict[str, Any]]:
    """The history of ``n`` finished Bash calls, as Claude Code sends it."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        out.append({"role": "assistant", "content": [{"type": "tool_use", "id": f"t{i}", "name": "Bash",
                                                      "input": {"command": "true"}}]})
        out.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"t{i}", "content": ""}]})
    return out


def openai_body(calls: int = 0, prompt: str = "hi") -> dict[str, Any]:
    items: list[dict[str, Any]] = [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "be brief"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": prompt}]}]
    for i in range(calls):
        items += [{"type": "function_call", "call_id": f"c{i}", "name": "exec_command", "arguments": "{}"},
                  {"type": "function_call_output", "call_id": f"c{i}", "output": "ok"}]
    return {"model": "gpt-5.5", "stream": True, "input": items,
            "tools": [{"type": "function", "name": "exec_command", "parameters": {}}]}


def gemini_body(calls: int = 0, prompt: str = "hi") -> dict[str, Any]:
    contents: list[dict[str, Any]] = [{"role": "user", "parts": [{"text": prompt}]}]
    for _ in range(calls):
        contents += [{"role": "model", "parts": [{"functionCall": {"name": "run_shell_command", "args": {}}}]},
                     {"role": "user", "parts": [{"functionResponse": {"name": "run_shell_command",
                                                                      "response": {"output": "ok"}}}]}]
    return {"contents": contents, "tools": [{"functionDeclarations": [{"name": "run_shell_command"}]}]}


GEMINI_STREAM = "/v1beta/models/gemini-test:streamGenerateContent?alt=sse"


@pytest.fixture
def model() -> Iterator[LoopbackModel]:
    with LoopbackModel(script="tool_then_answer") as m:
        yield m


# ---- the server ----------------------------------------------------------------------------


def test_model_binds_127_0_0_1_on_a_free_port_and_releases_it() -> None:
    with LoopbackModel() as a, LoopbackModel() as b:
        assert a.url == f"http://127.0.0.1:{a.port}" and a.port != b.port
        server = a._server
        assert server is not None and server.socket.getsockname() == ("127.0.0.1", a.port)
        port = a.port
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_head_root_answers_200_and_is_logged(model: LoopbackModel) -> None:
    assert call(model, "HEAD", "/")[0] == 200
    assert [(r.method, r.path, r.status) for r in model.requests] == [("HEAD", "/", 200)]


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_unknown_path_answers_404_json_and_is_logged(model: LoopbackModel, method: str) -> None:
    status, headers, raw = call(model, method, "/v2/nothing?x=1", {"a": 1} if method != "GET" else None)
    assert status == 404 and headers["content-type"] == "application/json"
    assert "/v2/nothing" in json.loads(raw)["error"]["message"]
    (logged,) = model.requests
    assert (logged.method, logged.path, logged.status, logged.script) == (method, "/v2/nothing?x=1", 404, None)
    assert logged.body == ({"a": 1} if method != "GET" else None)


def test_unknown_script_is_refused_with_the_known_names() -> None:
    with pytest.raises(KeyError, match="tool_then_answer"):
        LoopbackModel(script="nope")
    with pytest.raises(KeyError, match="multi_turn"):
        LoopbackModel(overrides={2: "nope"})


# ---- Anthropic Messages --------------------------------------------------------------------


def test_anthropic_stream_is_well_framed_sse_with_a_bash_call(model: LoopbackModel) -> None:
    status, headers, raw = call(model, "POST", "/v1/messages?beta=true", anthropic_body())
    assert status == 200 and headers["content-type"] == "text/event-stream"
    events = frames(raw)
    assert [name for name, _ in events] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    assert all(name == data["type"] for name, data in events)
    tool = events[4][1]["content_block"]
    assert tool["type"] == "tool_use" and tool["name"] == "Bash"
    assert json.loads(events[5][1]["delta"]["partial_json"])["command"] == script_steps("tool_then_answer")[0].command
    delta = events[7][1]
    assert delta["delta"]["stop_reason"] == "tool_use" and delta["usage"]["output_tokens"] == 58
    assert events[0][1]["message"]["model"] == "claude-test"
    assert model.requests[0].body["messages"][0]["role"] == "user"


def test_anthropic_answers_after_the_tool_result(model: LoopbackModel) -> None:
    _, _, raw = call(model, "POST", "/v1/messages", anthropic_body(*anthropic_round(1)))
    events = frames(raw)
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == script_steps("tool_then_answer")[1].text
    assert [(r.script, r.step) for r in model.model_requests()] == [("tool_then_answer", 1)]


def test_anthropic_without_stream_answers_one_json_message(model: LoopbackModel) -> None:
    status, headers, raw = call(model, "POST", "/v1/messages", anthropic_body(stream=False))
    message = json.loads(raw)
    assert status == 200 and headers["content-type"] == "application/json"
    assert [b["type"] for b in message["content"]] == ["text", "tool_use"]
    assert message["stop_reason"] == "tool_use" and message["usage"]["input_tokens"] == 2431


def test_a_request_without_a_shell_tool_gets_text_only(model: LoopbackModel) -> None:
    body = dict(anthropic_body(stream=False), tools=[])
    message = json.loads(call(model, "POST", "/v1/messages", body)[2])
    assert [b["type"] for b in message["content"]] == ["text"] and message["stop_reason"] == "end_turn"


# ---- OpenAI Responses ----------------------------------------------------------------------


def test_openai_stream_calls_exec_command_then_completes(model: LoopbackModel) -> None:
    status, headers, raw = call(model, "POST", "/v1/responses", openai_body())
    assert status == 200 and headers["content-type"] == "text/event-stream"
    events = frames(raw)
    assert [name for name, _ in events] == [
        "response.created", "response.output_item.added", "response.output_text.delta",
        "response.output_item.done", "response.output_item.added", "response.output_item.done",
        "response.completed"]
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    call_item = events[5][1]["item"]
    assert call_item["type"] == "function_call" and call_item["name"] == "exec_command"
    assert json.loads(call_item["arguments"]) == {"cmd": script_steps("tool_then_answer")[0].command}
    usage = events[-1][1]["response"]["usage"]
    assert usage == {"input_tokens": 2431, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 58,
                     "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 2489}


def test_openai_answers_with_a_message_after_the_call_output(model: LoopbackModel) -> None:
    events = frames(call(model, "POST", "/v1/responses", openai_body(calls=1))[2])
    done = [d["item"] for n, d in events if n == "response.output_item.done"]
    assert [i["type"] for i in done] == ["message"]
    assert done[0]["content"][0]["text"] == script_steps("tool_then_answer")[1].text


# ---- Gemini --------------------------------------------------------------------------------


def test_gemini_router_gets_its_json_complexity_answer(model: LoopbackModel) -> None:
    schema = {"type": "OBJECT", "properties": {"complexity_reasoning": {"type": "STRING"},
                                               "complexity_score": {"type": "INTEGER"}}}
    body = {"contents": [{"role": "user", "parts": [{"text": "route me"}]}],
            "generationConfig": {"responseMimeType": "application/json", "responseJsonSchema": schema}}
    status, _, raw = call(model, "POST", "/v1beta/models/gemini-lite:generateContent", body)
    answer = json.loads(json.loads(raw)["candidates"][0]["content"]["parts"][0]["text"])
    assert status == 200 and set(answer) == {"complexity_reasoning", "complexity_score"}
    assert isinstance(answer["complexity_score"], int) and 1 <= answer["complexity_score"] <= 100
    assert model.model_requests() == []  # a helper call, not a scripted turn


def test_gemini_stream_is_data_only_sse_with_a_shell_call(model: LoopbackModel) -> None:
    status, headers, raw = call(model, "POST", GEMINI_STREAM, gemini_body())
    assert status == 200 and headers["content-type"] == "text/event-stream"
    ((name, chunk),) = frames(raw)
    assert name is None
    candidate = chunk["candidates"][0]
    text, fcall = candidate["content"]["parts"]
    assert text == {"text": script_steps("tool_then_answer")[0].text}
    assert fcall["functionCall"]["name"] == "run_shell_command"
    assert set(fcall["functionCall"]["args"]) == {"command", "description"}
    assert candidate["finishReason"] == "STOP" and chunk["usageMetadata"]["totalTokenCount"] == 2489


def test_gemini_generate_content_without_schema_is_a_scripted_turn(model: LoopbackModel) -> None:
    raw = call(model, "POST", "/v1beta/models/gemini-test:generateContent", gemini_body(calls=1))[2]
    parts = json.loads(raw)["candidates"][0]["content"]["parts"]
    assert parts == [{"text": script_steps("tool_then_answer")[1].text}]


# ---- scripts -------------------------------------------------------------------------------

API_CALLS: dict[str, Callable[[LoopbackModel, int], tuple[int, dict[str, str], bytes]]] = {
    "anthropic": lambda m, n: call(m, "POST", "/v1/messages", anthropic_body(*anthropic_round(n))),
    "openai": lambda m, n: call(m, "POST", "/v1/responses", openai_body(calls=n)),
    "gemini": lambda m, n: call(m, "POST", GEMINI_STREAM, gemini_body(calls=n)),
}


@pytest.mark.parametrize("api", API_CALLS)
def test_api_error_answers_500_with_that_apis_error_body(api: str) -> None:
    with LoopbackModel(script="api_error") as m:
        status, headers, raw = API_CALLS[api](m, 0)
        assert m.requests[0].status == 500
    error = json.loads(raw)
    assert status == 500 and headers["content-type"] == "application/json"
    if api == "anthropic":
        assert error["type"] == "error" and error["error"]["type"] == "api_error"
    elif api == "openai":
        assert error["error"]["type"] == "server_error" and error["error"]["message"]
    else:
        assert error["error"]["code"] == 500 and error["error"]["status"] == "INTERNAL"


def shell_command(api: str, raw: bytes) -> str | None:
    """The shell command a streamed answer asks for, if any."""
    for name, data in frames(raw):
        if api == "anthropic" and name == "content_block_delta" and data["delta"]["type"] == "input_json_delta":
            return str(json.loads(data["delta"]["partial_json"])["command"])
        if api == "openai" and name == "response.output_item.done" and data["item"]["type"] == "function_call":
            return str(json.loads(data["item"]["arguments"])["cmd"])
        if api == "gemini":
            for part in data["candidates"][0]["content"]["parts"]:
                if "functionCall" in part:
                    return str(part["functionCall"]["args"]["command"])
    return None


@pytest.mark.parametrize("api", API_CALLS)
def test_long_tool_asks_for_sleep_300(api: str) -> None:
    with LoopbackModel(script="long_tool") as m:
        assert shell_command(api, API_CALLS[api](m, 0)[2]) == "sleep 300"
        assert shell_command(api, API_CALLS[api](m, 1)[2]) is None


@pytest.mark.parametrize("api", API_CALLS)
def test_multi_turn_follows_the_conversation_with_usage_on_every_answer(api: str) -> None:
    steps = script_steps("multi_turn")
    with LoopbackModel(script="multi_turn") as m:
        answers = [API_CALLS[api](m, n)[2] for n in range(len(steps))]
        assert [r.step for r in m.model_requests()] == list(range(len(steps)))
    assert [shell_command(api, raw) for raw in answers] == [s.command for s in steps]
    assert sum(1 for s in steps if s.command) >= 2
    for step, raw in zip(steps, answers, strict=True):
        assert step.usage.input_tokens > 0 and step.usage.output_tokens > 0
        events = frames(raw)
        if api == "anthropic":
            usage = events[-2][1]["usage"]
            assert (usage["input_tokens"], usage["output_tokens"]) == (step.usage.input_tokens, step.usage.output_tokens)
        elif api == "openai":
            usage = events[-1][1]["response"]["usage"]
            assert usage["output_tokens"] == step.usage.output_tokens
            assert usage["input_tokens"] == step.usage.input_tokens + step.usage.cached_tokens
        else:
            usage = events[-1][1]["usageMetadata"]
            assert usage["candidatesTokenCount"] == step.usage.output_tokens
            assert usage["cachedContentTokenCount"] == step.usage.cached_tokens


def test_usage_is_deterministic_across_servers() -> None:
    def answer() -> bytes:
        with LoopbackModel(script="multi_turn") as m:
            return call(m, "POST", "/v1/responses", openai_body(calls=1))[2]

    assert answer() == answer()


@pytest.mark.parametrize("api", API_CALLS)
def test_slow_answer_streams_its_text_over_seconds(api: str) -> None:
    step = script_steps("slow_answer")[0]
    with LoopbackModel(script="slow_answer") as m:
        path, body = {"anthropic": ("/v1/messages", anthropic_body()), "openai": ("/v1/responses", openai_body()),
                      "gemini": (GEMINI_STREAM, gemini_body())}[api]
        conn = http.client.HTTPConnection(rehearsal.HOST, m.port, timeout=30)
        try:
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            resp = conn.getresponse()
            arrivals, raw = [], b""
            while chunk := resp.read1():
                arrivals.append(time.monotonic())
                raw += chunk
        finally:
            conn.close()
    assert arrivals[-1] - arrivals[0] >= (step.chunks - 1) * step.delay * 0.8
    assert len(arrivals) >= step.chunks // 2  # pieces 0.4 s apart arrive apart, even on a busy machine
    def text_of(d: dict[str, Any]) -> str:
        if api == "anthropic":
            return str(d.get("delta", {}).get("text", ""))
        if api == "openai":
            return str(d["delta"]) if d["type"] == "response.output_text.delta" else ""
        return "".join(p.get("text", "") for p in d["candidates"][0]["content"]["parts"])

    assert "".join(text_of(d) for _, d in frames(raw)) == step.text


def test_overrides_answer_a_given_model_turn_with_another_script() -> None:
    with LoopbackModel(script="tool_then_answer", overrides={2: "api_error"}) as m:
        assert call(m, "POST", "/v1/responses", openai_body())[0] == 200
        assert call(m, "POST", "/v1/responses", openai_body(calls=1))[0] == 500
        assert call(m, "POST", "/v1/responses", openai_body(calls=1))[0] == 200
        assert [(r.script, r.step) for r in m.model_requests()] == [
            ("tool_then_answer", 0), ("api_error", 0), ("tool_then_answer", 1)]


def test_a_prompt_cue_picks_the_script_for_its_conversation(model: LoopbackModel) -> None:
    raw = call(model, "POST", GEMINI_STREAM, gemini_body(prompt="go [script:long_tool] now"))[2]
    assert shell_command("gemini", raw) == "sleep 300"
    assert model.model_requests()[0].script == "long_tool"


# ---- the CLI kit ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_cli_env_isolates_the_cli_and_points_it_at_the_model(
        kind: CliKind, model: LoopbackModel, tmp_path: Path) -> None:
    env = cli_env(kind, model, tmp_path)
    assert all(isinstance(v, str) for v in env.values())
    assert env["HOME"] == str(tmp_path / "home") and env["TMPDIR"] == str(tmp_path / "tmp")
    assert Path(env["TMPDIR"]).is_dir()
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        assert env[proxy] == ""
    assert all(v.startswith(model.url) for v in env.values() if "://" in v)  # Codex's URL is in its config
    if kind == "claude":
        assert env["ANTHROPIC_BASE_URL"] == model.url and env["ANTHROPIC_API_KEY"]
        assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == env["DISABLE_TELEMETRY"] == "1"
    elif kind == "codex":
        assert env["CODEX_HOME"] == str(tmp_path / "codex-home") and env["MOCK_API_KEY"]
        text = (tmp_path / "codex-home" / "config.toml").read_text()
        tomllib = pytest.importorskip("tomllib")
        config = tomllib.loads(text)
        assert config["model_provider"] == "mock" and config["check_for_update_on_startup"] is False
        assert config["model_providers"]["mock"]["base_url"] == model.url + "/v1"
        assert config["model_providers"]["mock"]["wire_api"] == "responses"
        assert config["analytics"]["enabled"] is False and config["otel"]["exporter"] == "none"
        assert not any(config["features"].values())
    else:
        assert env["GOOGLE_GEMINI_BASE_URL"] == model.url and env["GEMINI_API_KEY"]
        settings = json.loads((tmp_path / "home" / ".gemini" / "settings.json").read_text())
        assert settings["privacy"]["usageStatisticsEnabled"] is False and settings["telemetry"]["enabled"] is False
        assert settings["general"]["enableAutoUpdate"] is False
        assert settings["security"]["auth"]["selectedType"] == "gemini-api-key"


def test_cli_env_refuses_a_model_off_loopback(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        cli_env("claude", "http://localhost:8080", tmp_path)
    with pytest.raises(ValueError, match="unknown CLI"):
        cli_env("aider", "http://127.0.0.1:8080", tmp_path)  # type: ignore[arg-type]


def test_cli_argv_is_the_scripted_command_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RUNSTOP_NB_CLIS_DIR", str(tmp_path))  # nothing installed there: bare names
    assert cli_argv("claude", "P") == ["claude", "-p", "P", "--output-format", "stream-json", "--verbose",
                                       "--allowedTools", "Bash"]
    assert cli_argv("claude", "P", resume="S")[:3] == ["claude", "--resume", "S"]
    assert cli_argv("codex", "P") == ["codex", "exec", "--json", "--skip-git-repo-check",
                                      "--dangerously-bypass-approvals-and-sandbox", "P"]
    assert cli_argv("codex", "P", resume="T")[:5] == ["codex", "exec", "resume", "T", "--json"]
    assert cli_argv("gemini", "P") == ["gemini", "-p", "P", "--output-format", "stream-json", "--yolo"]
    assert cli_argv("gemini", "P", resume="S")[:3] == ["gemini", "--resume", "S"]


def test_cli_path_finds_an_executable_in_the_clis_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RUNSTOP_NB_CLIS_DIR", str(tmp_path))
    assert cli_path("codex") is None
    binary = tmp_path / "codex"
    binary.write_text("#!/bin/sh\n")
    assert cli_path("codex") is None  # not executable
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    assert cli_path("codex") == str(binary)
    assert cli_argv("codex", "P")[0] == str(binary)


# ---- the real CLIs -------------------------------------------------------------------------


def installed(kind: CliKind) -> CliKind:
    if cli_path(kind) is None:
        pytest.skip(f"the {kind} CLI is not installed: run scripts/clis.sh (or set RUNSTOP_NB_CLIS_DIR)")
    return kind


def rehearse(kind: CliKind, script: str, tmp_path: Path, **kw: Any) -> tuple[CliRun, LoopbackModel]:
    with LoopbackModel(script=script) as m:
        run = run_cli(installed(kind), m, tmp_path / "scratch", **kw)
    assert run.leftovers == [], f"{kind} left processes behind: {run.leftovers}"
    return run, m


def of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("type") == kind]


def tool_calls(kind: CliKind, events: list[dict[str, Any]]) -> list[str]:
    """The shell commands the CLI reports running, in order."""
    if kind == "claude":
        return [b["input"]["command"] for e in of(events, "assistant") for b in e["message"]["content"]
                if b["type"] == "tool_use"]
    if kind == "codex":
        return [shlex.split(e["item"]["command"])[-1] for e in of(events, "item.completed")
                if e["item"]["type"] == "command_execution"]  # shown as /bin/bash -lc '...'
    return [e["parameters"]["command"] for e in of(events, "tool_use")]


def tool_outputs(kind: CliKind, events: list[dict[str, Any]]) -> list[str]:
    if kind == "claude":
        return [str(b["content"]) for e in of(events, "user") for b in e["message"]["content"]
                if b["type"] == "tool_result"]
    if kind == "codex":
        return [e["item"]["aggregated_output"] for e in of(events, "item.completed")
                if e["item"]["type"] == "command_execution"]
    return [e["output"] for e in of(events, "tool_result")]


def final_text(kind: CliKind, events: list[dict[str, Any]]) -> str:
    """The text of the CLI's last answer."""
    if kind == "claude":
        return str(of(events, "result")[-1]["result"])
    if kind == "codex":
        return str([e for e in of(events, "item.completed") if e["item"]["type"] == "agent_message"][-1]["item"]["text"])
    text = ""  # Gemini streams a turn's text as assistant message deltas; a tool call ends the turn
    for e in events:
        if e.get("type") in ("tool_use", "tool_result"):
            text = ""
        elif e.get("type") == "message" and e.get("role") == "assistant":
            text += str(e["content"])
    return text


clis = pytest.mark.clis


@clis
@pytest.mark.parametrize("kind", KINDS)
def test_cli_runs_a_tool_then_answers(kind: CliKind, tmp_path: Path) -> None:
    run, model = rehearse(kind, "tool_then_answer", tmp_path)
    first, second = script_steps("tool_then_answer")
    events = run.events()
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    assert run.session_id()
    assert tool_calls(kind, events) == [first.command]
    assert [o.strip() for o in tool_outputs(kind, events)] == ["hello from the rehearsal"]
    assert (tmp_path / "scratch" / "work" / "note.txt").read_text() == "hello from the rehearsal\n"
    assert [(r.script, r.step) for r in model.model_requests()] == [("tool_then_answer", 0), ("tool_then_answer", 1)]
    if kind == "claude":
        assert events[0]["type"] == "system" and events[0]["subtype"] == "init" and "Bash" in events[0]["tools"]
        result = events[-1]
        assert result["type"] == "result" and result["subtype"] == "success" and not result["is_error"]
        assert result["result"] == second.text and result["num_turns"] == 2
    elif kind == "codex":
        assert [e["type"] for e in events][:2] == ["thread.started", "turn.started"]
        assert events[-1]["type"] == "turn.completed" and final_text(kind, events) == second.text
    else:
        assert events[0]["type"] == "init" and events[-1]["type"] == "result"
        assert events[-1]["status"] == "success" and events[-1]["stats"]["tool_calls"] == 1
        assert final_text(kind, events) == second.text


@clis
@pytest.mark.parametrize("kind", KINDS)
def test_cli_token_totals_add_up_over_a_multi_turn_run(kind: CliKind, tmp_path: Path) -> None:
    run, _ = rehearse(kind, "multi_turn", tmp_path)
    steps = script_steps("multi_turn")
    events = run.events()
    fresh = sum(s.usage.input_tokens for s in steps)
    cached = sum(s.usage.cached_tokens for s in steps)
    output = sum(s.usage.output_tokens for s in steps)
    assert run.returncode == 0
    assert tool_calls(kind, events) == [s.command for s in steps if s.command]
    assert [o.strip() for o in tool_outputs(kind, events)][1:] == ["3", "gamma\nbeta\nalpha"]
    if kind == "claude":
        usage = events[-1]["usage"]
        assert (usage["input_tokens"], usage["cache_read_input_tokens"], usage["output_tokens"]) == (
            fresh, cached, output)
    elif kind == "codex":
        usage = of(events, "turn.completed")[-1]["usage"]
        assert (usage["input_tokens"], usage["cached_input_tokens"], usage["output_tokens"]) == (
            fresh + cached, cached, output)
    else:
        stats = events[-1]["stats"]
        main = [v for k, v in stats["models"].items() if v["output_tokens"] == output]
        assert len(main) == 1 and (main[0]["input_tokens"], main[0]["cached"]) == (fresh + cached, cached)
        assert stats["tool_calls"] == 3


@clis
@pytest.mark.parametrize("kind", KINDS)
def test_cli_reports_a_scripted_api_error_and_fails(kind: CliKind, tmp_path: Path) -> None:
    run, model = rehearse(kind, "api_error", tmp_path)
    events = run.events()
    assert run.returncode != 0
    assert all(r.status == 500 for r in model.model_requests()) and len(model.model_requests()) >= 2  # one retry
    if kind == "claude":
        result = events[-1]
        assert run.returncode == 1 and result["type"] == "result"
        assert result["is_error"] is True and result["api_error_status"] == 500
    elif kind == "codex":
        assert run.returncode == 1 and events[-1]["type"] == "turn.failed" and of(events, "error")
    else:
        assert events[-1]["type"] == "result" and events[-1]["status"] == "error"
        assert "500" in events[-1]["error"]["message"]


@clis
@pytest.mark.parametrize("kind", KINDS)
def test_cli_streams_a_slow_answer(kind: CliKind, tmp_path: Path) -> None:
    run, _ = rehearse(kind, "slow_answer", tmp_path)
    assert run.returncode == 0
    events = run.events()
    text = script_steps("slow_answer")[0].text
    if kind == "gemini":  # the only one of the three that prints the pieces as they come
        pieces = [e["content"] for e in of(events, "message") if e["role"] == "assistant"]
        assert len(pieces) > 1 and "".join(pieces) == text
    else:
        assert final_text(kind, events) == text


@clis
@pytest.mark.parametrize("kind", KINDS)
def test_cli_resume_keeps_the_session(kind: CliKind, tmp_path: Path) -> None:
    installed(kind)
    scratch = tmp_path / "scratch"
    with LoopbackModel(script="tool_then_answer") as model:
        first = run_cli(kind, model, scratch)
        session = first.session_id()
        assert first.returncode == 0 and session
        again = run_cli(kind, model, scratch, "Once more.", resume=session)
        resumed = model.model_requests()[2:]
    assert again.returncode == 0 and again.session_id() == session
    assert [(r.script, r.step) for r in resumed] == [("tool_then_answer", 0), ("tool_then_answer", 1)]
    # the resumed request carries the first conversation: it is longer than the first one was
    assert len(json.dumps(resumed[0].body)) > len(json.dumps(model.model_requests()[0].body))


CONNECT = re.compile(r'inet_addr\("([\d.]+)"\)|inet_pton\(AF_INET6, "([^"]+)"')


@clis
@pytest.mark.parametrize("kind", KINDS)
def test_cli_connects_to_nothing_but_loopback(kind: CliKind, tmp_path: Path) -> None:
    """With cli_env's settings, strace sees no connect() or send to any address off 127.0.0.1."""
    installed(kind)
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed (apt-get install strace)")
    scratch = tmp_path / "scratch"
    (scratch / "work").mkdir(parents=True)
    log = tmp_path / "strace.log"
    with LoopbackModel(script="tool_then_answer") as model:
        argv = ["strace", "-f", "-qq", "-e", "trace=connect,sendto,sendmsg,sendmmsg", "-o", str(log),
                *cli_argv(kind, "Rehearsal.")]
        proc = subprocess.run(argv, env=cli_env(kind, model, scratch), cwd=scratch / "work",
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=120, start_new_session=True)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    addresses = {a or b for a, b in CONNECT.findall(log.read_text())}
    assert addresses and addresses <= {"127.0.0.1"}, f"{kind} connected to {addresses}"


@clis
@pytest.mark.parametrize("kind", KINDS)
def test_runstop_stop_leaves_nothing_of_a_cli_in_a_long_tool(kind: CliKind, tmp_path: Path) -> None:
    """A bare SIGTERM leaves the tool's shell of some of these CLIs running (docs/agent-clis.md);
    runstop_nb's stop must not."""
    import runstop_nb

    installed(kind)
    scratch = tmp_path / "scratch"
    (scratch / "work").mkdir(parents=True)
    seen: dict[int, float] = {}
    with LoopbackModel(script="long_tool") as model:
        run = runstop_nb.start(cli_argv(kind, "Rehearsal."), env=cli_env(kind, model, scratch),
                               cwd=scratch / "work", name=f"rehearsal-{kind}")
        try:
            assert run.pid is not None
            deadline = time.monotonic() + 90
            while not any(name_of(p) == "sleep" for p in _tree(run.pid)):  # a listed child may exit
                assert time.monotonic() < deadline, f"{kind} never started its sleep: {run.output()[-2000:]}"
                time.sleep(0.1)
            seen = created_at(_tree(run.pid))
            result = run.stop(grace=2)
            assert result.stopped
            time.sleep(0.2)
            alive = [pid for pid, created in seen.items() if _same_alive(pid, created)]
            assert alive == [], f"runstop_nb left {kind} processes running: {alive}"
        finally:
            if not run.done:
                run.stop(grace=0.5)
            for pid, created in seen.items():
                if _same_alive(pid, created):
                    os.kill(pid, 9)


def _tree(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _same_alive(pid: int, created: float) -> bool:
    try:
        p = psutil.Process(pid)
        return p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@clis
def test_capture_streams_writes_byte_exact_fixtures(tmp_path: Path) -> None:
    kinds = [k for k in KINDS if cli_path(k) is not None]
    if not kinds:
        pytest.skip("no agent CLI is installed: run scripts/clis.sh")
    out = tmp_path / "streams"
    written = capture(out, kinds, ("tool_then_answer",), scratch_root=tmp_path / "scratch")
    for kind in kinds:
        for stem in (f"{kind}-tool_then_answer", f"{kind}-tool_then_answer-resume"):
            meta = json.loads((out / f"{stem}.meta.json").read_text())
            lines = (out / f"{stem}.jsonl").read_bytes().splitlines()
            assert out / f"{stem}.jsonl" in written and lines
            assert meta["cli"] == kind and meta["exit_code"] == 0 and meta["cli_version"][0].isdigit()
            assert meta["argv"][0] == "{CLIS_DIR}/" + kind and not any(str(tmp_path) in a for a in meta["argv"])
            assert meta["session_id"] and meta["session_id"] in lines[0].decode()
        resumed = json.loads((out / f"{kind}-tool_then_answer-resume.meta.json").read_text())
        assert resumed["same_session"] is True and resumed["session_id"] in resumed["argv"]
