"""Rehearse a multi-agent notebook offline, without spending tokens.

Before a notebook starts three real coding agents on a paid model, try it against a model of
your own: ``LoopbackModel`` is a small HTTP server on 127.0.0.1 that answers like the Anthropic,
OpenAI (Responses) and Gemini APIs, from a named, deterministic script. The real CLIs (Claude
Code, Codex, Gemini CLI) then run for real: they print their usual JSON event streams, run the
scripted shell commands in their working folder, report token usage, fail on a scripted API
error, and can be stopped mid-tool, all with no network and no API key::

    import runstop_nb
    from runstop_nb import rehearsal

    with rehearsal.LoopbackModel(script="long_tool") as model:
        env = rehearsal.cli_env("codex", model, "scratch/codex")
        run = runstop_nb.start(rehearsal.cli_argv("codex", "tidy up"), env=env, cwd="work")
        ...                       # watch it, stop it: the shell tool runs `sleep 300`
        model.requests            # what the CLI sent

``cli_env`` gives each CLI its own scratch HOME and TMPDIR, dummy keys, telemetry and update
checks off and its base URL on the loopback model; ``cli_argv`` is the scripted command line;
``cli_path`` finds the CLIs that ``scripts/clis.sh`` installs. A prompt may pick its own script
with a cue such as ``[script:long_tool]``, so several agents can share one server.

This module is stdlib only and imports nothing else from runstop_nb.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, get_args

__all__ = [
    "KINDS",
    "SCRIPTS",
    "CliKind",
    "LoggedRequest",
    "LoopbackModel",
    "Step",
    "Usage",
    "cli_argv",
    "cli_env",
    "cli_launchers",
    "cli_path",
    "script_steps",
]

CliKind = Literal["claude", "codex", "gemini"]
KINDS: tuple[CliKind, ...] = get_args(CliKind)
HOST = "127.0.0.1"  # the only address this module ever binds or points a CLI at
CLIS_DIR_VAR = "RUNSTOP_NB_CLIS_DIR"
_CUE = re.compile(r"\[script:([a-z_]+)\]")


# ---- scripts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """Token figures of one model response: uncached input, cache reads, output."""

    input_tokens: int
    cached_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class Step:
    """One scripted model response: a shell tool call, a text answer, or an HTTP error.

    ``text`` streams in ``chunks`` pieces, ``delay`` seconds apart; ``command`` (if set)
    follows the text as a call of the CLI's shell tool; ``error`` (an HTTP status) replaces
    the whole answer with that API's error body.
    """

    usage: Usage
    text: str = ""
    command: str | None = None
    error: int | None = None
    chunks: int = 1
    delay: float = 0.0


def _usage(turn: int) -> Usage:
    # A first turn pays for the CLI's whole system prompt; later ones mostly read it from cache.
    if turn == 0:
        return Usage(input_tokens=2431, cached_tokens=0, output_tokens=58)
    return Usage(input_tokens=214 + 97 * turn, cached_tokens=2368 + 64 * turn, output_tokens=41 + 13 * turn)


_ROUTER_USAGE = Usage(input_tokens=1187, cached_tokens=0, output_tokens=31)  # Gemini's routing classifier

SCRIPTS: dict[str, tuple[Step, ...]] = {
    "tool_then_answer": (
        Step(_usage(0), text="I'll write the note.", command="echo hello from the rehearsal > note.txt && cat note.txt"),
        Step(_usage(1), text="Done: note.txt now says hello from the rehearsal."),
    ),
    "long_tool": (
        Step(_usage(0), text="This takes a while.", command="sleep 300"),
        Step(_usage(1), text="The long command finished."),
    ),
    "failing_tool": (
        Step(_usage(0), text="Let me read the notes.", command="cat missing-notes.txt"),
        Step(_usage(1), text="There are no notes yet: missing-notes.txt does not exist."),
    ),
    "api_error": (Step(_usage(0), error=500),),
    "slow_answer": (
        Step(_usage(0), text="Thinking it over, slowly: one, two, three, four, five, six, seven, eight. Done.",
             chunks=8, delay=0.4),
    ),
    "multi_turn": (
        Step(_usage(0), text="First, a list.", command="printf 'alpha\\nbeta\\ngamma\\n' > list.txt && ls"),
        Step(_usage(1), text="Now count its lines.", command="wc -l < list.txt"),
        Step(_usage(2), text="And sort it backwards.", command="sort -r list.txt"),
        Step(_usage(3), text="Three commands ran: list.txt has 3 lines, gamma sorts first backwards."),
    ),
}


def script_steps(name: str) -> tuple[Step, ...]:
    """The steps of the script called ``name``; KeyError lists the known names."""
    try:
        return SCRIPTS[name]
    except KeyError:
        raise KeyError(f"no rehearsal script {name!r}; known: {', '.join(SCRIPTS)}") from None


# ---- the server ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LoggedRequest:
    """One request the model received, and how it answered."""

    method: str
    path: str  # with its query string, as sent
    body: Any  # the parsed JSON body, or None
    status: int  # the HTTP status answered
    script: str | None = None  # the script that answered a model turn
    step: int | None = None  # that script's step index


class LoopbackModel:
    """A scripted model API on 127.0.0.1 and a free port, used as a context manager.

    ``script`` names the default script; ``overrides`` maps the 1-based number of a model turn
    (counted over the whole server) to a script that answers that turn instead, e.g.
    ``{2: "api_error"}`` runs a tool then fails. Which step of a script answers a request is
    read from the conversation the request carries: the number of tool calls since the last
    user prompt. ``requests`` is the log, in arrival order.
    """

    def __init__(self, script: str = "tool_then_answer", overrides: Mapping[int, str] | None = None) -> None:
        script_steps(script)
        for name in (overrides or {}).values():
            script_steps(name)
        self.script = script
        self.overrides = dict(overrides or {})
        self._log: list[LoggedRequest] = []
        self._turns = 0
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> LoopbackModel:
        """Bind 127.0.0.1 on a free port and serve from a daemon thread."""
        if self._server is not None:
            return self
        server = ThreadingHTTPServer((HOST, 0), _handler_for(self))
        server.daemon_threads = True
        host, port = server.server_address[:2]
        assert host == HOST, f"loopback model bound {host!r}, not {HOST}"
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,),  # a quick shutdown()
                                        name=f"loopback-model:{port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; open streams end with their daemon threads."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> LoopbackModel:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the loopback model is not running; use it as a context manager")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, with no trailing slash."""
        return f"http://{HOST}:{self.port}"

    @property
    def requests(self) -> list[LoggedRequest]:
        """A copy of the request log."""
        with self._lock:
            return list(self._log)

    def model_requests(self) -> list[LoggedRequest]:
        """The logged requests that were answered as model turns (from a script)."""
        return [r for r in self.requests if r.script is not None]

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "stopped"
        return f"<LoopbackModel {self.script!r} {where} requests={len(self._log)}>"

    # used by the handler

    def _record(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._log.append(entry)

    def _choose(self, prompt: str, turn: int) -> tuple[str, Step, int]:
        """The script, step and step index that answer a model turn."""
        with self._lock:
            self._turns += 1
            number = self._turns
        name = self.overrides.get(number)
        if name is None:
            cue = _CUE.search(prompt)
            name = cue.group(1) if cue and cue.group(1) in SCRIPTS else self.script
        steps = script_steps(name)
        index = min(turn, len(steps) - 1)
        return name, steps[index], index

    def _new_id(self) -> int:
        return next(self._ids)


def _handler_for(model: LoopbackModel) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        pass

    Handler.model = model
    return Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and chunked streams
    server_version = "runstop-rehearsal"
    model: LoopbackModel

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log is model.requests, not stderr

    def do_HEAD(self) -> None:
        # Claude Code probes the base URL before its first request.
        self.model._record(LoggedRequest("HEAD", self.path, None, 200))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self._not_found(self._body())

    do_PUT = do_PATCH = do_DELETE = do_GET

    def _body(self) -> Any:
        """The request's JSON body, or None (read in full either way, for keep-alive)."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        raw = self.rfile.read(length) if length > 0 else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    def do_POST(self) -> None:
        body = self._body()
        route = self.path.split("?", 1)[0]
        if route == "/v1/messages":
            self._answer(body, _Anthropic())
        elif route == "/v1/responses":
            self._answer(body, _OpenAI())
        elif route.startswith("/v1beta/models/") and route.endswith(":streamGenerateContent"):
            self._answer(body, _Gemini(route))
        elif route.startswith("/v1beta/models/") and route.endswith(":generateContent"):
            self._gemini_json(body, route)
        elif route.startswith("/v1beta/models/") and route.endswith(":countTokens"):
            self.model._record(LoggedRequest("POST", self.path, body, 200))
            self._send_json(200, {"totalTokens": 2431})
        else:
            self._not_found(body)

    # helpers

    def _not_found(self, body: Any) -> None:
        # Every entry is logged before its answer goes out: a client that saw the answer sees it logged.
        self.model._record(LoggedRequest(self.command, self.path, body, 404))
        self._send_json(404, {"error": {"type": "not_found_error", "code": 404, "status": "NOT_FOUND",
                                        "message": f"the rehearsal model has no route {self.command} {self.path}"}})

    def _send_json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _answer(self, body: Any, api: _Api) -> None:
        if not isinstance(body, dict):
            self.model._record(LoggedRequest("POST", self.path, body, 400))
            self._send_json(400, api.error_body(400, "the request body is not a JSON object"))
            return
        name, step, index = self.model._choose(api.prompt(body), api.turn(body))
        if step.error is not None:
            self.model._record(LoggedRequest("POST", self.path, body, step.error, name, index))
            self._send_json(step.error, api.error_body(step.error, "scripted failure of the rehearsal model"))
            return
        tool = api.shell_tool(body) if step.command is not None else None
        stream = api.stream(body)
        self.model._record(LoggedRequest("POST", self.path, body, 200, name, index))
        ident = f"{self.model._new_id():04d}{index}"
        events = api.events(body, step, tool, ident)
        if not stream:
            self._send_json(200, api.whole(body, step, tool, ident))
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for pause, event, data in events:
                if pause:
                    time.sleep(pause)
                frame = (f"event: {event}\n" if event else "") + f"data: {json.dumps(data)}\n\n"
                self._chunk(frame.encode())
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the CLI went away mid-stream (e.g. it was stopped)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _gemini_json(self, body: Any, route: str) -> None:
        """Gemini's non-streaming calls: JSON-mode helpers (the router) or a plain answer."""
        config = body.get("generationConfig", {}) if isinstance(body, dict) else {}
        schema = config.get("responseJsonSchema") or config.get("responseSchema")
        if isinstance(schema, dict):
            text = json.dumps(_from_schema(schema))
            payload = _Gemini(route).final(text, [], _ROUTER_USAGE)
            self.model._record(LoggedRequest("POST", self.path, body, 200))
            self._send_json(200, payload)
            return
        self._answer(body, _Gemini(route))


def _from_schema(schema: Mapping[str, Any]) -> Any:
    """A plausible JSON value for a JSON-mode helper call (a router, a next-speaker check)."""
    known: dict[str, Any] = {
        "complexity_score": 20,  # Gemini's router: a simple task, for the flash model
        "complexity_reasoning": "A short scripted task.",
        "next_speaker": "user",
        "reasoning": "The scripted turn is complete.",
    }
    kind = str(schema.get("type", "object")).lower()
    if kind == "object":
        props = schema.get("properties", {})
        return {k: known[k] if k in known else _from_schema(v) for k, v in props.items()}
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return False
    if kind == "array":
        return []
    enum = schema.get("enum")
    return enum[0] if isinstance(enum, list) and enum else "ok"


# ---- the three wire formats ----------------------------------------------------------------

Event = tuple[float, str | None, dict[str, Any]]  # (pause before it, SSE event name, data)


def _pieces(text: str, chunks: int) -> list[str]:
    if chunks <= 1 or not text:
        return [text] if text else []
    size = -(-len(text) // chunks)
    return [text[i:i + size] for i in range(0, len(text), size)]


def _texts(content: Any) -> str:
    """All text of a message's content, whichever API shaped it."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(_texts(p.get("text", p.get("content", ""))) for p in content if isinstance(p, dict))
    return ""


class _Api:
    """One API's wire format: reading a request and writing a scripted answer."""

    def prompt(self, body: dict[str, Any]) -> str:
        raise NotImplementedError

    def turn(self, body: dict[str, Any]) -> int:
        raise NotImplementedError

    def shell_tool(self, body: dict[str, Any]) -> str | None:
        raise NotImplementedError

    def stream(self, body: dict[str, Any]) -> bool:
        return True

    def events(self, body: dict[str, Any], step: Step, tool: str | None, ident: str) -> Iterator[Event]:
        raise NotImplementedError

    def whole(self, body: dict[str, Any], step: Step, tool: str | None, ident: str) -> dict[str, Any]:
        raise NotImplementedError

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        raise NotImplementedError


def _tool_names(tools: Any, key: str = "name") -> set[str]:
    return {str(t.get(key)) for t in tools if isinstance(t, dict)} if isinstance(tools, list) else set()


class _Anthropic(_Api):
    """The Messages API: ``POST /v1/messages`` with ``stream: true``."""

    def _human(self, body: dict[str, Any]) -> tuple[int, list[Any]]:
        messages = [m for m in body.get("messages", []) if isinstance(m, dict)]
        last = 0
        for i, m in enumerate(messages):
            content = m.get("content")
            results = isinstance(content, list) and any(
                isinstance(b, dict) and b.get("type") == "tool_result" for b in content)
            if m.get("role") == "user" and not results:
                last = i
        return last, messages

    def prompt(self, body: dict[str, Any]) -> str:
        last, messages = self._human(body)
        return _texts(messages[last].get("content")) if messages else ""

    def turn(self, body: dict[str, Any]) -> int:
        last, messages = self._human(body)
        return sum(1 for m in messages[last:] if m.get("role") == "assistant"
                   and any(isinstance(b, dict) and b.get("type") == "tool_use" for b in m.get("content") or []))

    def shell_tool(self, body: dict[str, Any]) -> str | None:
        return "Bash" if "Bash" in _tool_names(body.get("tools")) else None

    def stream(self, body: dict[str, Any]) -> bool:
        return bool(body.get("stream"))

    def _blocks(self, step: Step, tool: str | None, ident: str) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        if step.text:
            blocks.append({"type": "text", "text": step.text})
        if tool and step.command:
            args: dict[str, Any] = {"command": step.command, "description": "Scripted rehearsal command"}
            if "sleep" in step.command:
                args["timeout"] = 600000  # past the Bash tool's 2-minute default
            blocks.append({"type": "tool_use", "id": f"toolu_rehearsal{ident}", "name": tool, "input": args})
        return blocks

    def _usage(self, u: Usage) -> dict[str, Any]:
        return {"input_tokens": u.input_tokens, "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": u.cached_tokens, "output_tokens": u.output_tokens}

    def _stop(self, tool: str | None, step: Step) -> str:
        return "tool_use" if tool and step.command else "end_turn"

    def whole(self, body: dict[str, Any], step: Step, tool: str | None, ident: str) -> dict[str, Any]:
        return {"id": f"msg_rehearsal{ident}", "type": "message", "role": "assistant",
                "model": body.get("model", "claude-rehearsal"), "content": self._blocks(step, tool, ident),
                "stop_reason": self._stop(tool, step), "stop_sequence": None, "usage": self._usage(step.usage)}

    def events(self, body: dict[str, Any], step: Step, tool: str | None, ident: str) -> Iterator[Event]:
        message = self.whole(body, step, tool, ident)
        start = dict(message, content=[], stop_reason=None, usage=dict(self._usage(step.usage), output_tokens=1))
        yield 0.0, "message_start", {"type": "message_start", "message": start}
        for index, block in enumerate(message["content"]):
            if block["type"] == "text":
                yield 0.0, "content_block_start", {"type": "content_block_start", "index": index,
                                                   "content_block": {"type": "text", "text": ""}}
                for n, piece in enumerate(_pieces(block["text"], step.chunks)):
                    yield (step.delay if n else 0.0), "content_block_delta", {
                        "type": "content_block_delta", "index": index,
                        "delta": {"type": "text_delta", "text": piece}}
            else:
                yield 0.0, "content_block_start", {"type": "content_block_start", "index": index,
                                                   "content_block": dict(block, input={})}
                yield 0.0, "content_block_delta", {"type": "content_block_delta", "index": index, "delta": {
                    "type": "input_json_delta", "partial_json": json.dumps(block["input"])}}
            yield 0.0, "content_block_stop", {"type": "content_block_stop", "index": index}
        yield 0.0, "message_delta", {"type": "message_delta", "usage": self._usage(step.usage),
                                     "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None}}
        yield 0.0, "message_stop", {"type": "message_stop"}

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        kind = {400: "invalid_request_error", 429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}


class _OpenAI(_Api):
    """The Responses API: ``POST /v1/responses``, streamed."""

    def _human(self, body: dict[str, Any]) -> tuple[int, list[Any]]:
        items = body.get("input")
        items = [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []
        last = 0
        for n, item in enumerate(items):
            if item.get("role") == "user" and item.get("type", "message") == "message":
                last = n
        return last, items

    def prompt(self, body: dict[str, Any]) -> str:
        last, items = self._human(body)
        return _texts(items[last].get("content")) if items else str(body.get("input", ""))

    def turn(self, body: dict[str, Any]) -> int:
        last, items = self._human(body)
        return sum(1 for i in items[last:] if i.get("type") == "function_call")

    def shell_tool(self, body: dict[str, Any]) -> str | None:
        names = _tool_names(body.get("tools"))
        for name in ("exec_command", "shell_command", "shell"):
            if name in names:
                return name
        return None

    def stream(self, body: dict[str, Any]) -> bool:
        return body.get("stream", True) is not False

    def _items(self, step: Step, tool: str | None, ident: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        if step.text:
            items.append({"id": f"msg_rehearsal{ident}", "type": "message", "status": "completed", "role": "assistant",
                          "content": [{"type": "output_text", "text": step.text, "annotations": []}]})
        if tool and step.command:
            shapes: dict[str, dict[str, Any]] = {"exec_command": {"cmd": step.command},
                                                 "shell_command": {"command": step.command},
                                                 "shell": {"command": ["bash", "-lc", step.command]}}
            args = shapes[tool]
            items.append({"id": f"fc_rehearsal{ident}", "type": "function_call", "status": "completed",
                          "call_id": f"call_rehearsal{ident}", "name": tool, "arguments": json.dumps(args)})
        return items

    def whole(self, body: dict[str, Any], step: Step, tool: str | None, ident: str) -> dict[str, Any]:
        u = step.usage
        return {"id": f"resp_rehearsal{ident}", "object": "response", "created_at": 1700000000,
                "status": "completed", "model": body.get("model", "gpt-rehearsal"),
                "output": self._items(step, tool, ident),
                "usage": {"input_tokens": u.input_tokens + u.cached_tokens,
                          "input_tokens_details": {"cached_tokens": u.cached_tokens},
                          "output_tokens": u.output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                          "total_tokens": u.input_tokens + u.cached_tokens + u.output_tokens}}

    def events(self, body: dict[str, Any], step: Step, tool: str | None, ident: str) -> Iterator[Event]:
        response = self.whole(body, step, tool, ident)
        seq = itertools.count()

        def event(kind: str, pause: float = 0.0, **fields: Any) -> Event:
            return pause, kind, {"type": kind, "sequence_number": next(seq), **fields}

        yield event("response.created", response=dict(response, status="in_progress", output=[], usage=None))
        for index, item in enumerate(response["output"]):
            if item["type"] == "message":
                yield event("response.output_item.added", output_index=index,
                            item=dict(item, status="in_progress", content=[]))
                for n, piece in enumerate(_pieces(item["content"][0]["text"], step.chunks)):
                    yield event("response.output_text.delta", step.delay if n else 0.0, item_id=item["id"],
                                output_index=index, content_index=0, delta=piece)
            else:
                yield event("response.output_item.added", output_index=index, item=item)
            yield event("response.output_item.done", output_index=index, item=item)
        yield event("response.completed", response=response)

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        kind = {400: "invalid_request_error", 429: "rate_limit_exceeded"}.get(status, "server_error")
        return {"error": {"type": kind, "code": kind, "message": message, "param": None}}


class _Gemini(_Api):
    """The Gemini API: ``:streamGenerateContent?alt=sse`` (and ``:generateContent``)."""

    def __init__(self, route: str) -> None:
        self.model_name = route.split("/models/", 1)[-1].split(":", 1)[0]
        self.streamed = route.endswith(":streamGenerateContent")

    def stream(self, body: dict[str, Any]) -> bool:
        return self.streamed

    def _human(self, body: dict[str, Any]) -> tuple[int, list[Any]]:
        contents = [c for c in body.get("contents", []) if isinstance(c, dict)]
        last = 0
        for n, c in enumerate(contents):
            parts = [p for p in c.get("parts", []) if isinstance(p, dict)]
            if c.get("role") == "user" and not any("functionResponse" in p for p in parts):
                last = n
        return last, contents

    def prompt(self, body: dict[str, Any]) -> str:
        last, contents = self._human(body)
        return _texts(contents[last].get("parts")) if contents else ""

    def turn(self, body: dict[str, Any]) -> int:
        last, contents = self._human(body)
        return sum(1 for c in contents[last:] if c.get("role") == "model"
                   and any(isinstance(p, dict) and "functionCall" in p for p in c.get("parts", [])))

    def shell_tool(self, body: dict[str, Any]) -> str | None:
        names: set[str] = set()
        for tool in body.get("tools", []) if isinstance(body.get("tools"), list) else []:
            if isinstance(tool, dict):
                names |= _tool_names(tool.get("functionDeclarations"))
        return "run_shell_command" if "run_shell_command" in names else None

    def _usage(self, u: Usage) -> dict[str, Any]:
        return {"promptTokenCount": u.input_tokens + u.cached_tokens, "cachedContentTokenCount": u.cached_tokens,
                "candidatesTokenCount": u.output_tokens,
                "totalTokenCount": u.input_tokens + u.cached_tokens + u.output_tokens}

    def final(self, text: str, calls: list[dict[str, Any]], usage: Usage) -> dict[str, Any]:
        parts: list[dict[str, Any]] = ([{"text": text}] if text else []) + calls
        return {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
                "usageMetadata": self._usage(usage), "modelVersion": self.model_name}

    def _calls(self, step: Step, tool: str | None) -> list[dict[str, Any]]:
        if not (tool and step.command):
            return []
        return [{"functionCall": {"name": tool, "args": {"command": step.command,
                                                          "description": "Scripted rehearsal command"}}}]

    def whole(self, body: dict[str, Any], step: Step, tool: str | None, ident: str) -> dict[str, Any]:
        return self.final(step.text, self._calls(step, tool), step.usage)

    def events(self, body: dict[str, Any], step: Step, tool: str | None, ident: str) -> Iterator[Event]:
        pieces = _pieces(step.text, step.chunks)
        for n, piece in enumerate(pieces[:-1]):
            yield (step.delay if n else 0.0), None, {
                "candidates": [{"content": {"role": "model", "parts": [{"text": piece}]}, "index": 0}],
                "modelVersion": self.model_name}
        last = pieces[-1] if pieces else ""
        yield (step.delay if len(pieces) > 1 else 0.0), None, self.final(last, self._calls(step, tool), step.usage)

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        kind = {400: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE"}.get(status, "INTERNAL")
        return {"error": {"code": status, "message": message, "status": kind}}


# ---- the CLIs ------------------------------------------------------------------------------


def cli_path(kind: CliKind) -> str | None:
    """The installed CLI binary, or None: ``$RUNSTOP_NB_CLIS_DIR/KIND``, else the one that
    ``scripts/clis.sh`` installs into ``scripts/agent-clis/node_modules/.bin``."""
    if kind not in KINDS:
        raise ValueError(f"unknown CLI {kind!r}; known: {', '.join(KINDS)}")
    folder = os.environ.get(CLIS_DIR_VAR)
    base = Path(folder) if folder else Path(__file__).resolve().parent.parent / "scripts/agent-clis/node_modules/.bin"
    path = base / kind
    return str(path) if path.is_file() and os.access(path, os.X_OK) else None


def cli_argv(kind: CliKind, prompt: str, *, resume: str | None = None) -> list[str]:
    """The scripted, machine-readable command line of a CLI, binary first.

    The binary is ``cli_path(kind)``, or the bare name for a PATH lookup when it is not
    installed. ``resume`` continues a session (Claude's ``session_id``, Codex's ``thread_id``,
    Gemini's ``session_id``). Run it with standard input from /dev/null: Codex reads a
    prompt from a non-terminal stdin.
    """
    binary = cli_path(kind) or kind
    if kind == "claude":
        again = ["--resume", resume] if resume else []
        return [binary, *again, "-p", prompt, "--output-format", "stream-json", "--verbose", "--allowedTools", "Bash"]
    if kind == "codex":
        head = ["exec", "resume", resume] if resume else ["exec"]
        return [binary, *head, "--json", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox", prompt]
    if kind == "gemini":
        again = ["--resume", resume] if resume else []
        return [binary, *again, "-p", prompt, "--output-format", "stream-json", "--yolo"]
    raise ValueError(f"unknown CLI {kind!r}; known: {', '.join(KINDS)}")


def cli_env(
    kind: CliKind, model: LoopbackModel | str, scratch_dir: str | os.PathLike[str], *, retries: int = 1
) -> dict[str, str]:
    """A complete environment that runs one CLI against the loopback model, and writes its config.

    ``model`` is a running LoopbackModel or its URL. Under ``scratch_dir`` the CLI gets its
    own ``home`` and ``tmp`` (and Codex its ``codex-home``), so nothing of the user's real
    configuration, credentials or sessions is read or written. Keys are dummies, telemetry
    and update checks are off, and proxy variables are set empty, so the dict is also safe
    to lay over a kernel's environment (``runstop_nb.start(..., env=cli_env(...))``).
    ``retries`` caps the CLI's retries of a failed model request (their defaults make a
    scripted API error take 25 s to over 3 minutes). Reuse the same ``scratch_dir`` to resume
    a session.
    """
    if not 0 <= retries <= 9:
        raise ValueError(f"retries must be 0..9, not {retries}")
    url = model.url if isinstance(model, LoopbackModel) else model.rstrip("/")
    if not url.startswith(f"http://{HOST}:"):
        raise ValueError(f"the rehearsal model must be on http://{HOST}:PORT, not {url!r}")
    scratch = Path(scratch_dir).resolve()
    home, tmp = scratch / "home", scratch / "tmp"
    for folder in (home / ".config", home / ".cache", home / ".local/share", home / ".local/state", tmp):
        folder.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "SHELL": "/bin/bash",
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_STATE_HOME": str(home / ".local/state"),
        "NO_PROXY": f"{HOST},localhost",
        "no_proxy": f"{HOST},localhost",
    }
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[proxy] = env[proxy.lower()] = ""  # a kernel's proxy must not carry loopback traffic away
    if kind == "claude":
        env |= _claude_env(url, home, retries)
    elif kind == "codex":
        env |= _codex_env(url, scratch / "codex-home", retries)
    elif kind == "gemini":
        env |= _gemini_env(url, home, retries)
    else:
        raise ValueError(f"unknown CLI {kind!r}; known: {', '.join(KINDS)}")
    return env


def _claude_env(url: str, home: Path, retries: int) -> dict[str, str]:
    return {
        "ANTHROPIC_BASE_URL": url,
        "ANTHROPIC_API_KEY": "rehearsal-key",
        "ANTHROPIC_AUTH_TOKEN": "",
        "CLAUDE_CONFIG_DIR": str(home / ".claude"),
        "CLAUDE_CODE_USE_BEDROCK": "",
        "CLAUDE_CODE_USE_VERTEX": "",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_BUG_COMMAND": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_MAX_RETRIES": str(retries),
    }


_CODEX_CONFIG = """\
# Written by runstop_nb.rehearsal: Codex against the loopback model, nothing else.
model = "gpt-5.5"
model_provider = "mock"
check_for_update_on_startup = false

[model_providers.mock]
name = "runstop_nb rehearsal model"
base_url = "{url}/v1"
wire_api = "responses"
env_key = "MOCK_API_KEY"
request_max_retries = {retries}
stream_max_retries = {retries}

[analytics]
enabled = false

[otel]
exporter = "none"
trace_exporter = "none"
metrics_exporter = "none"

[features]
plugins = false
remote_plugin = false
apps = false
"""


def _codex_env(url: str, codex_home: Path, retries: int) -> dict[str, str]:
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(_CODEX_CONFIG.format(url=url, retries=retries))
    return {"CODEX_HOME": str(codex_home), "MOCK_API_KEY": "rehearsal-key", "OPENAI_API_KEY": "",
            "OPENAI_BASE_URL": ""}


def _gemini_env(url: str, home: Path, retries: int) -> dict[str, str]:
    settings = {
        "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False, "maxAttempts": retries + 1},
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False, "logPrompts": False},
        "security": {"auth": {"selectedType": "gemini-api-key"}},
    }
    folder = home / ".gemini"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    return {
        "GEMINI_API_KEY": "rehearsal-key",
        "GOOGLE_GEMINI_BASE_URL": url,
        "GEMINI_CLI_TRUST_WORKSPACE": "true",
        "GOOGLE_API_KEY": "",
        "GOOGLE_CLOUD_PROJECT": "",
        "GOOGLE_GENAI_USE_VERTEXAI": "false",
        "GOOGLE_GENAI_USE_GCA": "false",
    }


def cli_launchers(
    model: LoopbackModel | str, scratch_dir: str | os.PathLike[str], *, retries: int = 1,
    kinds: tuple[CliKind, ...] = KINDS,
) -> Path:
    """Write ``claude``, ``codex`` and ``gemini`` launchers into ``scratch_dir/bin``; return that folder.

    Each launcher runs the installed CLI (``cli_path``) with ``cli_env(kind, model,
    scratch_dir/kind)`` laid over the caller's environment (so a run's cookie and the
    kernel's variables still reach it), passing its arguments through unchanged. Put the
    folder first on the kernel's PATH and a notebook's unchanged command lines
    (``claude -p ...``, ``codex exec ...``, ``gemini -p ...``) rehearse against the
    loopback model. A CLI that is not installed gets no launcher.
    """
    folder = Path(scratch_dir).resolve() / "bin"
    folder.mkdir(parents=True, exist_ok=True)
    for kind in kinds:
        binary = cli_path(kind)
        if binary is None:
            continue
        env = cli_env(kind, model, Path(scratch_dir) / kind, retries=retries)
        pairs = " ".join(shlex.quote(f"{k}={v}") for k, v in sorted(env.items()))
        launcher = folder / kind
        launcher.write_text(f"#!/bin/sh\n# runstop_nb rehearsal: {kind} against the loopback model\n"
                            f"exec env {pairs} {shlex.quote(binary)} \"$@\"\n")
        launcher.chmod(0o755)
    return folder
