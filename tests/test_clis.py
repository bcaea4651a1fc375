"""The real Claude Code, Codex and Gemini CLIs under runstop_nb, against the loopback model.

Issue 18's acceptance, one test per item, each parametrized over the three CLIs and each
checked from outside: what the CLI's own events in the log say, the processes seen before
a stop (pid and start time), and the run's cookie in /proc afterwards. The CLIs talk to
``runstop_nb.rehearsal.LoopbackModel`` on 127.0.0.1 only (docs/agent-clis.md); a test skips
when its CLI is not installed (``scripts/clis.sh``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

import runstop_nb
from runstop_nb import _runstate as rs
from runstop_nb.rehearsal import KINDS, CliKind, LoopbackModel, cli_argv, cli_env, cli_launchers, cli_path

from .helpers import alive, cookie_alive, created_at, kill_pids, name_of, wait_for
from .kernel import kernel

pytestmark = pytest.mark.clis

PROMPT = "Rehearsal: please do the scripted task."
DEATH_LIMIT = 5.0  # seconds from a kernel's death to the last process of its runs (as test_kernel.py)


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> CliKind:
    cli: CliKind = request.param
    if cli_path(cli) is None:
        pytest.skip(f"the {cli} CLI is not installed: run scripts/clis.sh (or set RUNSTOP_NB_CLIS_DIR)")
    return cli


@pytest.fixture
def model() -> Iterator[LoopbackModel]:
    with LoopbackModel(script="tool_then_answer") as m:
        yield m


def start_cli(kind: CliKind, model: LoopbackModel, tmp_path: Path, prompt: str = PROMPT,
              **kw: Any) -> runstop_nb.Run:
    """The CLI's scripted command line under runstop_nb, in a scratch home and work folder."""
    scratch = tmp_path / "scratch"
    (scratch / "work").mkdir(parents=True, exist_ok=True)
    return runstop_nb.start(cli_argv(kind, prompt), env=cli_env(kind, model, scratch), cwd=scratch / "work",
                            name=f"cli-{kind}", **kw)


# ---- what the CLI's own events say (read here from the log, not by runstop_nb's parsers) ----


def events(run: runstop_nb.Run) -> list[dict[str, Any]]:
    found = []
    for line in run.output("stdout").splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return found


def of(evs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in evs if e.get("type") == kind]


def session_of(kind: CliKind, evs: list[dict[str, Any]]) -> str:
    if kind == "codex":
        return str(of(evs, "thread.started")[0]["thread_id"])
    first = of(evs, "system" if kind == "claude" else "init")[0]
    return str(first["session_id"])


def commands_of(kind: CliKind, evs: list[dict[str, Any]]) -> list[str]:
    """The shell commands the CLI reports running."""
    if kind == "claude":
        return [b["input"]["command"] for e in of(evs, "assistant") for b in e["message"]["content"]
                if b["type"] == "tool_use"]
    if kind == "codex":
        return [shlex.split(e["item"]["command"])[-1] for e in of(evs, "item.completed")
                if e["item"]["type"] == "command_execution"]  # shown as /bin/bash -lc '...'
    return [e["parameters"]["command"] for e in of(evs, "tool_use")]


def usage_of(kind: CliKind, evs: list[dict[str, Any]]) -> tuple[int, int, int, float | None]:
    """(input with cached, output, cached input, cost) as the CLI's final figures say."""
    if kind == "claude":
        result = of(evs, "result")[-1]
        u = result["usage"]
        reads = u["cache_read_input_tokens"]
        every = u["input_tokens"] + u["cache_creation_input_tokens"] + reads
        return every, u["output_tokens"], reads, result["total_cost_usd"]
    if kind == "codex":  # the sum of the turns; Codex's input already counts the cached part
        turns = [e["usage"] for e in of(evs, "turn.completed")]
        return (sum(u["input_tokens"] for u in turns), sum(u["output_tokens"] for u in turns),
                sum(u["cached_input_tokens"] for u in turns), None)
    stats = [e["stats"] for e in of(evs, "result")]
    return (sum(s["input_tokens"] for s in stats), sum(s["output_tokens"] for s in stats),
            sum(s["cached"] for s in stats), None)


def error_of(kind: CliKind, evs: list[dict[str, Any]]) -> str:
    """The CLI's own words for a failed run."""
    if kind == "claude":
        return str(of(evs, "result")[-1]["result"])
    if kind == "codex":
        return str(of(evs, "turn.failed")[-1]["error"]["message"])
    return str(of(evs, "result")[-1]["error"]["message"])


# ---- processes, from outside -------------------------------------------------------------


def tree(pid: int | None) -> list[psutil.Process]:
    if pid is None:
        return []
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def still_alive(seen: dict[int, float]) -> list[int]:
    """The snapshotted processes that still run (the same process: pid and start time)."""
    alive = []
    for pid, created in seen.items():
        try:
            p = psutil.Process(pid)
            if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.Error:
            continue
    return alive


def wait_for_sleep(kind: CliKind, pid: Callable[[], int | None], what: Callable[[], str],
                   timeout: float = 90) -> list[psutil.Process]:
    """Wait until the CLI's shell tool runs ``sleep 300``; return the whole tree then."""
    deadline = time.monotonic() + timeout
    while True:
        procs = tree(pid())
        if any(name_of(p) == "sleep" for p in procs):
            return procs
        assert time.monotonic() < deadline, f"{kind} never started its sleep: {what()}"
        time.sleep(0.1)


def node_processes(procs: list[psutil.Process]) -> int:
    return sum(1 for p in procs if name_of(p) in ("node", "MainThread"))


# ---- (1) run.agent equals the CLI's own events -------------------------------------------


def test_run_agent_equals_what_the_clis_events_say(kind: CliKind, tmp_path: Path) -> None:
    with LoopbackModel(script="multi_turn") as model:
        run = start_cli(kind, model, tmp_path)
        assert run.wait(120) == "completed", run.output()[-3000:]
    evs = events(run)
    agent = run.agent
    assert agent is not None and run.format == kind
    assert agent.kind == kind
    assert agent.session_id == session_of(kind, evs)
    assert agent.tool_calls == len(commands_of(kind, evs)) == 3
    usage = agent.usage
    assert (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens, usage.cost_usd) == usage_of(kind, evs)
    if kind == "claude":
        assert usage.cost_usd is not None and usage.cost_usd > 0  # the one CLI that reports a cost
        assert agent.turns == of(evs, "result")[-1]["num_turns"]
    assert not agent.is_error
    assert cookie_alive(run.spec.cookie) == []


# ---- (2) Stop while the shell tool runs a long command -----------------------------------


def test_stop_mid_tool_leaves_nothing_running(kind: CliKind, model: LoopbackModel, tmp_path: Path) -> None:
    run = start_cli(kind, model, tmp_path, "Rehearsal: [script:long_tool] take your time.")
    seen: dict[int, float] = {}
    try:
        procs = wait_for_sleep(kind, lambda: run.pid, lambda: run.output()[-2000:])
        if kind == "gemini":  # the default, relaunching mode: a parent node and its child node
            assert node_processes(procs) >= 2, [(p.pid, name_of(p)) for p in procs]
        time.sleep(0.5)  # into the tool, as a person clicking Stop would be
        procs = tree(run.pid)
        seen = created_at(procs)
        assert any(name_of(p) == "sleep" for p in procs)
        result = run.stop(grace=1)
        assert result.stopped and result.reason == "stopped" and run.status == "cancelled"
        assert cookie_alive(run.spec.cookie) == []
        assert still_alive(seen) == [], f"runstop_nb left {kind} processes running"
    finally:
        kill_pids(still_alive(seen))


# ---- (3) kernel SIGKILL mid-tool -------------------------------------------------------------

START_IN_KERNEL = """
import runstop_nb
from runstop_nb import rehearsal
r = runstop_nb.start(rehearsal.cli_argv({kind!r}, {prompt!r}), env=rehearsal.cli_env({kind!r}, {url!r}, {scratch!r}),
                     cwd={work!r}, name="cli-{kind}")
"""


@pytest.mark.kernel
def test_kernel_sigkill_mid_tool_leaves_nothing_running(kind: CliKind, model: LoopbackModel,
                                                         tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    (scratch / "work").mkdir(parents=True)
    seen: dict[int, float] = {}
    cookie = ""
    try:
        with kernel(tmp_path, {"RUNSTOP_NB_HOME": str(tmp_path / "home")}) as k:
            k.ok(START_IN_KERNEL.format(kind=kind, prompt="Rehearsal: [script:long_tool] take your time.",
                                        url=model.url, scratch=str(scratch), work=str(scratch / "work")))
            pid, cookie = k.eval("(r.pid, r.spec.cookie)")
            wait_for_sleep(kind, lambda: pid, lambda: str(k.eval("r.tail(20)")))
            time.sleep(0.5)
            seen = created_at(tree(pid))
            kernel_pid = k.pid
            psutil.Process(kernel_pid).send_signal(signal.SIGKILL)
            wait_for(lambda: not alive(kernel_pid), 10, "the kernel to die")
            wait_for(lambda: not cookie_alive(cookie) and not still_alive(seen), DEATH_LIMIT + 5,
                     f"every process of the {kind} run to die after its kernel")
    finally:
        kill_pids(still_alive(seen))
        if cookie:
            kill_pids(cookie_alive(cookie))


# ---- (4) an API error ends the run failed, in the CLI's own words --------------------------


def test_api_error_fails_the_run_with_the_clis_message(kind: CliKind, tmp_path: Path) -> None:
    with LoopbackModel(script="api_error") as model:
        run = start_cli(kind, model, tmp_path)
        assert run.wait(120) == "failed", run.output()[-3000:]
        assert all(r.status == 500 for r in model.model_requests())
    message = error_of(kind, events(run))
    assert message and json.dumps(message, ensure_ascii=False)[1:-1] in run.output("stdout")  # as the CLI wrote it
    assert run.returncode == {"claude": 1, "codex": 1, "gemini": 244}[kind]
    agent = run.agent
    assert agent is not None and agent.is_error
    # what the widget shows: the failed state and the CLI's message on an error card
    state = rs.state(run)
    assert state["status"] == "failed" and state["exit"] == f"exit {run.returncode}"
    cards = rs.cards(run.cards(rs.CARD_WINDOW))
    assert any(c["status"] == "error" and message[:150] in c["summary"] + c["body"] for c in cards), cards
    assert rs.agent(agent) is not None and rs.agent(agent)["is_error"] is True  # type: ignore[index]
    assert cookie_alive(run.spec.cookie) == []


# ---- (5) resume keeps the session ------------------------------------------------------------

RESUME_WORD = {"claude": "--resume", "codex": "resume", "gemini": "--resume"}  # codex: exec [options] resume ID


def test_resume_with_the_clis_own_flag_keeps_the_session(kind: CliKind, model: LoopbackModel,
                                                         tmp_path: Path) -> None:
    first = start_cli(kind, model, tmp_path)
    assert first.wait(120) == "completed", first.output()[-3000:]
    assert first.agent is not None
    session = first.agent.session_id
    assert session == session_of(kind, events(first))
    again = first.resume("Rehearsal: and once more, please.")
    assert again.wait(120) == "completed", again.output()[-3000:]
    at = again.argv.index(RESUME_WORD[kind])
    assert again.argv[at + 1] == session  # the CLI's own resume syntax
    assert kind != "codex" or again.argv[1] == "exec"
    assert again.agent is not None and again.agent.session_id == session == session_of(kind, events(again))
    assert again.parent == first.id
    resumed = model.model_requests()[2:]
    assert [(r.script, r.step) for r in resumed] == [("tool_then_answer", 0), ("tool_then_answer", 1)]
    # the CLI sent the first conversation along: the resumed request is the longer one
    assert len(json.dumps(resumed[0].body)) > len(json.dumps(model.model_requests()[0].body))
    assert cookie_alive(again.spec.cookie) == []


# ---- (6) a budget stop ---------------------------------------------------------------------

BUDGET = 1000
BUDGET_NOTE = re.compile(r"budget exceeded: ([\d,]+) tokens, limit 1,000")


def test_budget_stop_on_a_real_cli(kind: CliKind, model: LoopbackModel, tmp_path: Path) -> None:
    """Claude reports usage on every assistant line, so its budget stops it mid-turn. Codex and
    Gemini report usage only when their one turn ends, so the budget acts between the runs of a
    loop over tasks (the way a budget is used with them): the second task, a long tool, is stopped."""
    scratch = tmp_path / "scratch"
    (scratch / "work").mkdir(parents=True)
    env = cli_env(kind, model, scratch)
    long_task = cli_argv(kind, "Rehearsal: [script:long_tool] take your time.")
    if kind == "claude":
        cmd: list[str] | str = long_task
    else:
        cmd = f"{shlex.join(cli_argv(kind, PROMPT))}; {shlex.join(long_task)}"
    run = runstop_nb.start(cmd, shell=isinstance(cmd, str), env=env, cwd=scratch / "work",
                           name=f"cli-{kind}", max_tokens=BUDGET, grace=1)
    try:
        assert run.wait(120) == "cancelled", run.output()[-3000:]
        stop = run.last_stop
        assert stop is not None and stop.stopped and stop.cause == "budget"
        match = BUDGET_NOTE.search(stop.note or "")
        assert match, stop.note
        figure = int(match.group(1).replace(",", ""))
        evs = events(run)
        if kind == "claude":  # the first assistant line's usage crossed the limit
            u = of(evs, "assistant")[0]["message"]["usage"]
            first = u["input_tokens"] + u["cache_creation_input_tokens"] + u["cache_read_input_tokens"]
            assert figure == first + u["output_tokens"]
        else:  # the first task's final figures; the second never reported any
            every, output, _, _ = usage_of(kind, evs)
            assert figure == every + output
        assert figure > BUDGET
        assert rs.stop_details(run)["headline"] == "budget exceeded"  # type: ignore[index]
        assert cookie_alive(run.spec.cookie) == []
    finally:
        if not run.done:
            run.stop(grace=0.5)


# ---- rehearsing a notebook: the launchers --------------------------------------------------


def test_launchers_rehearse_an_unchanged_command_line(kind: CliKind, model: LoopbackModel, tmp_path: Path) -> None:
    """``cli_launchers`` first on PATH: the bare ``claude``/``codex``/``gemini`` command line runs the
    real CLI against the loopback model, and the run's cookie reaches the tool's processes."""
    folder = cli_launchers(model, tmp_path / "scratch")
    (tmp_path / "work").mkdir()
    argv = [kind, *cli_argv(kind, "Rehearsal: [script:long_tool] take your time.")[1:]]
    run = runstop_nb.start(argv, env={"PATH": f"{folder}:{os.environ['PATH']}"}, cwd=tmp_path / "work",
                           name=f"cli-{kind}")
    seen: dict[int, float] = {}
    try:
        procs = wait_for_sleep(kind, lambda: run.pid, lambda: run.output()[-2000:])
        seen = created_at(procs)
        (sleeper,) = [p for p in procs if name_of(p) == "sleep"]
        assert sleeper.environ().get("RUNSTOP_NB_COOKIE") == run.spec.cookie
        assert [r.script for r in model.model_requests()] == ["long_tool"]
        assert run.stop(grace=1).stopped
        assert cookie_alive(run.spec.cookie) == [] and still_alive(seen) == []
    finally:
        kill_pids(still_alive(seen))
