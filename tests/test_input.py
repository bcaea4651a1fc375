"""Input to a running agent (``stdin=True`` / ``pty=True``): send, close, Ctrl+C.

Real processes throughout. What was sent is kept in the log as its own stream, in order with
what the agent wrote; a full pipe is a clear error, never a hung cell; Ctrl+C reaches the
agent's foreground process group and nothing else; and input does not weaken stopping.
"""

from __future__ import annotations

import signal
import sys
from functools import partial
from pathlib import Path

import psutil
import pytest

import runstop_nb
from runstop_nb import InputError

from .helpers import AGENTS, alive, cookie_alive, kill_pids, wait_for
from .kernel import kernel

PY = sys.executable
# Answers each line it reads; exits on "bye".
ECHO_AGENT = (
    "import sys\n"
    "for line in sys.stdin:\n"
    "    line = line.strip()\n"
    "    print('you said ' + line, flush=True)\n"
    "    if line == 'bye':\n"
    "        break\n"
)


def test_lines_sent_to_cat_come_back_in_order_and_are_logged(tmp_path: Path) -> None:
    run = runstop_nb.start(["cat"], name="cat", stdin=True)
    try:
        assert run.stdin_open
        for i in range(20):
            run.send(f"line {i}\n")
        run.close_stdin()
        assert run.wait(10) == "completed"
        assert run.output() == "".join(f"line {i}\n" for i in range(20))
        assert run.output("stdin") == run.output(), "what was sent is kept as its own stream"
        assert not run.stdin_open
    finally:
        run.stop(0.2)


@pytest.mark.parametrize("trial", range(5))  # the agent answers as fast as the guard records: a race
def test_a_conversation_interleaves_input_and_answers_in_order(trial: int) -> None:
    run = runstop_nb.start([PY, "-c", ECHO_AGENT], name=f"chat{trial}", stdin=True)
    try:
        for word in ("hello", "how are you", "bye"):
            run.send(word + "\n")
            wait_for(partial(lambda w: f"you said {w}\n" in run.output(), word), 10, f"the answer to {word!r}")
        assert run.wait(10) == "completed"
        assert run.output("all") == (
            "hello\nyou said hello\nhow are you\nyou said how are you\nbye\nyou said bye\n")
    finally:
        run.stop(0.2)


def test_a_pty_run_reads_its_input_from_its_terminal() -> None:
    script = "import sys\nprint('tty' if sys.stdin.isatty() else 'pipe', flush=True)\nprint('got', input(), flush=True)\n"
    run = runstop_nb.start([PY, "-c", script], name="tty", pty=True)
    try:
        wait_for(lambda: "tty" in run.output(), 10, "the agent to report its stdin")
        run.send("ping\n")
        assert run.wait(10) == "completed"
        assert "got ping" in run.output()
    finally:
        run.stop(0.2)


def test_a_full_pipe_is_an_error_after_a_short_wait_not_a_hang() -> None:
    run = runstop_nb.start(["sleep", "1000"], name="deaf", stdin=True)
    try:
        with pytest.raises(InputError) as info:
            run.send("x" * (4 << 20))  # far more than a pipe holds; sleep never reads
        message = str(info.value)
        assert "\n" not in message and "not reading its input" in message
        assert run.status == "running", "a full pipe is not a reason to stop the agent"
        sent = len(run.output("stdin"))
        assert 0 < sent < 4 << 20, "what could be written is kept in the log, and no more"
    finally:
        run.stop(0.2)
    assert cookie_alive(run.spec.cookie) == []


def test_sending_to_an_ended_run_or_one_without_stdin_is_a_one_line_error() -> None:
    plain = runstop_nb.start(["sleep", "1000"], name="plain")
    ended = runstop_nb.start(["true"], name="ended", stdin=True)
    try:
        with pytest.raises(InputError, match="started without stdin"):
            plain.send("hi\n")
        assert ended.wait(10) == "completed"
        with pytest.raises(InputError, match="has ended") as info:
            ended.send("hi\n")
        assert "\n" not in str(info.value)
        ended.close_stdin()  # idempotent after the end
    finally:
        plain.stop(0.2)


# An agent in its own group that records SIGINT, with a child in a group of its own that
# records it too: Ctrl+C must reach the first and never the second.
INT_AGENT = r"""
import os, signal, sys, time
out = sys.argv[1]
def rec(who):
    def h(s, f):
        with open(out, "a") as fh:
            fh.write(who + "\n")
    return h
if os.fork() == 0:
    os.setpgid(0, 0)
    signal.signal(signal.SIGINT, rec("other-group"))
    print("child ready", flush=True)
    while True:
        time.sleep(1)
signal.signal(signal.SIGINT, rec("agent"))
print("agent ready", flush=True)
while True:
    time.sleep(1)
"""


@pytest.mark.parametrize("pty", [False, True])
def test_ctrl_c_reaches_only_the_agents_foreground_group(tmp_path: Path, pty: bool) -> None:
    record = tmp_path / "sigint.txt"
    run = runstop_nb.start([PY, "-c", INT_AGENT, str(record)], name="int", stdin=True, pty=pty)
    try:
        wait_for(lambda: "agent ready" in run.output() and "child ready" in run.output(), 10, "both ready")
        run.interrupt()
        wait_for(lambda: record.exists() and "agent" in record.read_text(), 10, "the agent's SIGINT")
        run.wait(0.3)
        assert record.read_text().split() == ["agent"], "SIGINT reached another process group"
        assert run.status == "running", "Ctrl+C is not a stop"
        assert len(psutil.Process(run.pid).children()) == 1, "the agent's child in another group lives"
    finally:
        run.stop(0.2)
    assert cookie_alive(run.spec.cookie) == []


@pytest.mark.parametrize("pty", [False, True])
def test_stop_with_input_open_leaves_nothing(pty: bool) -> None:
    run = runstop_nb.start([PY, "-c", ECHO_AGENT], name="open", stdin=True, pty=pty)
    try:
        run.send("hello\n")
        wait_for(lambda: "you said hello" in run.output(), 10, "the first answer")
        result = run.stop(0.5)
        assert result.stopped and run.status == "cancelled"
        assert cookie_alive(run.spec.cookie) == []
        with pytest.raises(InputError):
            run.send("more\n")
    finally:
        kill_pids(cookie_alive(run.spec.cookie))


@pytest.mark.kernel
def test_kernel_death_with_input_open_leaves_nothing(tmp_path: Path) -> None:
    cookies: list[str] = []
    try:
        with kernel(AGENTS.parent, {"RUNSTOP_NB_HOME": str(tmp_path / "home")}) as k:
            k.ok(f"import runstop_nb, sys\n"
                 f"a = runstop_nb.start([sys.executable, '-c', {ECHO_AGENT!r}], name='a', stdin=True)\n"
                 "b = runstop_nb.start(['cat'], name='b', pty=True)\n"
                 "c = runstop_nb.start(['sleep', '1000'], name='c', stdin=True)\n"
                 "a.send('hello\\n'); b.send('hi\\n')")
            cookies = k.eval("[r.spec.cookie for r in (a, b, c)]")
            wait_for(lambda: "you said hello" in k.eval("a.output()"), 10, "the agent's answer")
            # A full pipe in a cell: an error in that cell, and the kernel answers the next one.
            reply = k.run("c.send('x' * (4 << 20))")
            assert reply.error.startswith("InputError"), reply.error
            assert k.eval("1 + 1") == 2
            psutil.Process(k.pid).kill()
            wait_for(lambda: not alive(k.pid), 10, "the kernel to die")
            wait_for(lambda: all(cookie_alive(c) == [] for c in cookies), 5, "every tree dead within 5 s of the kernel")
    finally:
        kill_pids([p for c in cookies for p in cookie_alive(c)])


def test_the_signal_is_sigint() -> None:
    """interrupt() is SIGINT, not a stop signal: an agent that exits on SIGINT ends 'failed'
    or 'completed' by itself, never 'cancelled'."""
    run = runstop_nb.start([PY, "-c", "import time\nprint('up', flush=True)\ntime.sleep(100)"], name="dies", stdin=True)
    try:
        wait_for(lambda: "up" in run.output(), 10, "the agent")
        run.interrupt()
        status = run.wait(10)
        assert status in ("failed", "completed"), status
        assert run.returncode in (1, -signal.SIGINT), run.returncode  # KeyboardInterrupt exits 1
    finally:
        run.stop(0.2)
