"""Bad input: named cases, each with its expected outcome, and hypothesis fuzzing.

Four tables of named cases: what a caller can get wrong in ``start()`` (``INPUT_ERRORS``: a
typed runstop_nb error with a one-line message, nothing spawned, nothing registered) and in
the magics (``MAGIC_ERRORS``: a one-line UsageError, nothing started), what an agent can
write (``OUTPUT_CASES``: the run completes, the log is byte-exact, output() and tail() work,
the widget tail ``run.buffer.lines()`` stays bounded), and awkward timing (``TIMING_CASES``).
Then hypothesis throws random arguments at ``start()`` and random argument strings at
``%agent_run``, ``%%agent_run`` and ``%agent_stop``: only UsageError or a runstop_nb error
may come out, no process may leak, and the kernel stays usable.

Fuzzed commands can only reach harmless programs: PATH is a folder holding ``true``,
``false``, ``echo`` and ``cat``, and the working folder is a temporary one.
``RUNSTOP_FUZZ_EXAMPLES`` raises the number of examples per fuzz test (default 50).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import runstop_nb
from runstop_nb import (
    CommandNotFoundError,
    InvalidSpecError,
    NameInUseError,
    RunNotFoundError,
    RunstopError,
    StartError,
    _spec,
)
from runstop_nb._kernelstate import kernel_state
from runstop_nb._logs import MAX_LINE_CHARS, MAX_TAIL_LINES
from runstop_nb._registry import registry
from runstop_nb._supervisor import supervisor
from runstop_nb._terminal import collapse_cr

from .helpers import alive, cookie_alive, helpers_of, kill_pids, pids_with, wait_for

PY = sys.executable
SLEEP = shutil.which("sleep") or "/bin/sleep"  # found before a test jails PATH
MAGICS = Path(runstop_nb.__file__).parent / "_magics.py"
EXAMPLES = int(os.environ.get("RUNSTOP_FUZZ_EXAMPLES") or 50)
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
LINE_BOUND = MAX_LINE_CHARS + 100  # a clipped line, plus its "… N more characters" note
ENDED_BOUND = 200 + 2  # lines kept once a run ends, plus one partial line per stream


# -- helpers -----------------------------------------------------------------------------


def owner_marker() -> bytes:
    return f"RUNSTOP_NB_OWNER={_spec.owner_marker()}\0".encode()


def strays() -> list[int]:
    """Live processes this test process owns (by RUNSTOP_NB_OWNER) that no live run holds:
    agents of ended runs, and guards other than those of live runs (the warden stays)."""
    live_runs = [r for r in runstop_nb.runs() if not r.done]
    live = [f"RUNSTOP_NB_COOKIE={r.spec.cookie}\0".encode() for r in live_runs]
    agents = pids_with(owner_marker(), unless=[*live, b"RUNSTOP_NB_ROLE=warden"])
    keep = {getattr(getattr(r._agent, "guard", None), "pid", None) for r in live_runs}
    link = kernel_state().peek("warden")
    keep.add(link.pid if link is not None else None)
    guards = [p for p in helpers_of(os.getpid()) if p not in keep]
    return agents + guards


def no_strays(timeout: float = 5.0) -> None:
    """Released guards exit within milliseconds; anything else left is a leak."""
    deadline = time.monotonic() + timeout
    while (left := strays()) and time.monotonic() < deadline:
        time.sleep(0.02)
    kill_pids(left)
    assert not left, f"processes leaked: {[(p, psutil.Process(p).cmdline()) for p in left if alive(p)]}"


@pytest.fixture
def jail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH with four harmless programs, and a scratch working folder."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for prog in ("true", "false", "echo", "cat"):
        os.symlink(shutil.which(prog) or f"/bin/{prog}", bin_dir / prog)
    work = tmp_path / "work"
    work.mkdir()
    (work / "afile").write_text("not a folder\n")
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.chdir(work)
    return work


def lines_of(text: str, n: int) -> str:
    lines = text.splitlines()[-n:]
    return "\n".join(lines) + ("\n" if lines and text.endswith("\n") else "")


# -- input errors ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    call: Callable[[Path], object]  # given a scratch folder, makes the bad call
    error: type[Exception]
    message: str  # a substring of the one-line message
    non_root: bool = False  # root may enter any folder: the case cannot happen as root


def _file(tmp: Path, name: str, text: str, mode: int) -> str:
    path = tmp / name
    path.write_text(text)
    path.chmod(mode)
    return str(path)


def _folder(tmp: Path, mode: int) -> str:
    path = tmp / "locked"
    path.mkdir()
    path.chmod(mode)
    return str(path)


S = runstop_nb.start
INPUT_ERRORS: dict[str, Bad] = {
    "missing command": Bad(lambda t: S([]), InvalidSpecError, "empty command"),
    "command is None": Bad(lambda t: S(None), InvalidSpecError, "empty command"),  # type: ignore[arg-type]
    "empty command name": Bad(lambda t: S([""]), InvalidSpecError, "the command name is empty"),
    "blank shell command": Bad(lambda t: S("   ", shell=True), InvalidSpecError, "non-empty string"),
    "string without shell=True": Bad(lambda t: S("echo hi"), InvalidSpecError, "pass a list of arguments"),
    "non-string argument": Bad(lambda t: S(["echo", 3]), InvalidSpecError, "every argument in cmd must be a str"),  # type: ignore[list-item]
    "NUL in an argument": Bad(lambda t: S(["echo", "a\0b"]), InvalidSpecError, "NUL byte"),
    "NUL in a shell command": Bad(lambda t: S("echo a\0b", shell=True), InvalidSpecError, "NUL byte"),
    "unknown command": Bad(lambda t: S(["no-such-command-xyz"]), CommandNotFoundError, "command not found"),
    "missing script path": Bad(lambda t: S(["./nope.sh"], cwd=t), CommandNotFoundError, "does not exist"),
    "permission denied (no x bit)": Bad(lambda t: S([_file(t, "noexec.sh", "#!/bin/sh\n", 0o644)]),
                                        StartError, "permission denied"),
    "a folder as the command": Bad(lambda t: S([str(t)]), StartError, "permission denied"),
    "bad #! interpreter": Bad(lambda t: S([_file(t, "bang.sh", "#!/no/such/interp\n", 0o755)]),
                              StartError, "the interpreter on its #! line (#!/no/such/interp) was not found"),
    "not an executable format": Bad(lambda t: S([_file(t, "junk.bin", "\x7fELF garbage", 0o755)]),
                                    StartError, "Exec format error"),
    "argument too long (E2BIG)": Bad(lambda t: S(["echo", "x" * 200_000]), StartError, "Argument list too long"),
    "missing cwd": Bad(lambda t: S(["true"], cwd=t / "missing"), StartError, "does not exist or is not a folder"),
    "cwd is a file": Bad(lambda t: S(["true"], cwd=_file(t, "f.txt", "", 0o644)), StartError, "not a folder"),
    "cwd without permission": Bad(lambda t: S(["true"], cwd=_folder(t, 0o000)), StartError,
                                  "permission denied: cannot enter cwd", non_root=True),
    "cwd of the wrong type": Bad(lambda t: S(["true"], cwd=3), InvalidSpecError, "cwd must be a path"),  # type: ignore[arg-type]
    "name with shell metacharacters": Bad(lambda t: S(["true"], name="a;rm -rf"), InvalidSpecError, "invalid run name"),
    "name with a newline": Bad(lambda t: S(["true"], name="a\nb"), InvalidSpecError, "invalid run name"),
    "empty name": Bad(lambda t: S(["true"], name=""), InvalidSpecError, "invalid run name"),
    "name of 65 characters": Bad(lambda t: S(["true"], name="n" * 65), InvalidSpecError, "invalid run name"),
    "env key containing '='": Bad(lambda t: S(["true"], env={"A=B": "1"}), InvalidSpecError, "invalid env key"),
    "empty env key": Bad(lambda t: S(["true"], env={"": "1"}), InvalidSpecError, "invalid env key"),
    "env value not a str": Bad(lambda t: S(["true"], env={"A": 1}), InvalidSpecError, "must be a str"),  # type: ignore[dict-item]
    "NUL in an env value": Bad(lambda t: S(["true"], env={"A": "x\0y"}), InvalidSpecError, "NUL byte"),
    "env overriding the cookie": Bad(lambda t: S(["true"], env={"RUNSTOP_NB_COOKIE": "x"}), InvalidSpecError,
                                     "set by runstop_nb"),
    "env overriding the run id": Bad(lambda t: S(["true"], env={"RUNSTOP_NB_RUN_ID": "x"}), InvalidSpecError,
                                     "set by runstop_nb"),
    "env unsetting the owner": Bad(lambda t: S(["true"], env={"RUNSTOP_NB_OWNER": None}), InvalidSpecError,
                                   "set by runstop_nb"),
    "env setting a role": Bad(lambda t: S(["true"], env={"RUNSTOP_NB_ROLE": "warden"}), InvalidSpecError,
                              "set by runstop_nb"),
    "env not a mapping": Bad(lambda t: S(["true"], env=["A=1"]), InvalidSpecError, "env must be a mapping"),  # type: ignore[arg-type]
    "grace of 0": Bad(lambda t: S(["true"], grace=0), InvalidSpecError, "positive, finite"),
    "negative grace": Bad(lambda t: S(["true"], grace=-1), InvalidSpecError, "positive, finite"),
    "grace NaN": Bad(lambda t: S(["true"], grace=float("nan")), InvalidSpecError, "got nan"),
    "grace infinite": Bad(lambda t: S(["true"], grace=float("inf")), InvalidSpecError, "got inf"),
    "grace as a string": Bad(lambda t: S(["true"], grace="3"), InvalidSpecError, "must be a number"),  # type: ignore[arg-type]
    "grace True": Bad(lambda t: S(["true"], grace=True), InvalidSpecError, "must be a number"),
    "timeout of 0": Bad(lambda t: S(["true"], timeout=0), InvalidSpecError, "positive, finite"),
    "get an unknown name": Bad(lambda t: runstop_nb.get("nobody"), RunNotFoundError, "no run named 'nobody'"),
    "get an empty name": Bad(lambda t: runstop_nb.get(""), RunNotFoundError, "no run named ''"),
}


@pytest.mark.parametrize("case", list(INPUT_ERRORS))
def test_input_error(case: str, tmp_path: Path, runs_home: Path) -> None:
    bad = INPUT_ERRORS[case]
    if bad.non_root and os.geteuid() == 0:
        pytest.skip("root enters any folder")
    before = len(runstop_nb.runs())
    with pytest.raises(bad.error) as info:
        bad.call(tmp_path)
    message = str(info.value)
    assert isinstance(info.value, RunstopError)
    assert bad.message in message, message
    assert "\n" not in message, "messages are one line"
    assert len(runstop_nb.runs()) == before, "a refused start registers nothing"
    logs = runs_home / "runs"
    assert not logs.exists() or not any(logs.iterdir()), "a refused start leaves no log folder"
    no_strays()


# The same mistakes made through the magics: each a one-line UsageError, nothing started.
MAGIC_ERRORS: dict[str, tuple[str, str, str]] = {  # case: (magic, line, message)
    "unknown flag": ("agent_run", "--frobnicate -- true", "unrecognized arguments: --frobnicate"),
    "missing command": ("agent_run", "--name x --", "missing command"),
    "empty line": ("agent_run", "", "missing command"),
    "unknown command": ("agent_run", "-- no-such-command-xyz", "command not found"),
    "flag without its value": ("agent_run", "--grace", "expected one argument"),
    "grace of 0": ("agent_run", "--grace 0 -- true", "--grace must be a positive"),
    "negative timeout": ("agent_run", "--timeout -5 -- true", "--timeout must be a positive"),
    "timeout not a number": ("agent_run", "--timeout soon -- true", "invalid float value"),
    "env without '='": ("agent_run", "--env KEY -- true", "--env takes KEY=VALUE"),
    "env with an empty key": ("agent_run", "--env =v -- true", "--env takes KEY=VALUE"),
    "name with shell metacharacters": ("agent_run", "--name 'a|b' -- true", "invalid run name"),
    "name with a newline": ("agent_run", "--name 'a\nb' -- true", "invalid run name"),
    "missing cwd": ("agent_run", "--cwd missing -- true", "does not exist"),
    "unbalanced quote": ("agent_run", "-- echo 'open", "No closing quotation"),
    "stop with nothing named": ("agent_stop", "", "name the runs to stop, or pass --all"),
    "stop an unknown run": ("agent_stop", "nobody", "no run named 'nobody'"),
    "stop with a bad grace": ("agent_stop", "--all --grace nan", "--grace must be a positive"),
    "ls with arguments": ("agent_ls", "everything", "takes no arguments"),
}


@pytest.mark.parametrize("case", list(MAGIC_ERRORS))
def test_magic_input_error(case: str, request: pytest.FixtureRequest) -> None:
    if not MAGICS.exists():
        pytest.skip("runstop_nb/_magics.py is not written yet")
    from IPython.core.error import UsageError

    shell = request.getfixturevalue("shell")
    name, line, message = MAGIC_ERRORS[case]
    before = len(runstop_nb.runs())
    with pytest.raises(UsageError) as info:
        shell.run_line_magic(name, line)
    assert message in str(info.value) and "\n" not in str(info.value).strip(), str(info.value)
    assert len(runstop_nb.runs()) == before, "a refused line starts nothing"
    no_strays()


@pytest.mark.parametrize("value", ["x --shell", "x -- rm -rf /tmp/nothing", "$(id)", "{other}", "a b"])
def test_a_variable_cannot_inject_options_into_a_magic(value: str, request: pytest.FixtureRequest) -> None:
    """``{n}`` expands after parsing, into one word: a value with spaces is a bad name, never options."""
    from IPython.core.error import UsageError

    shell = request.getfixturevalue("shell")
    shell.user_ns.update(n=value, other="y --wait")
    before = len(runstop_nb.runs())
    with pytest.raises(UsageError) as info:
        shell.run_line_magic("agent_run", "--name {n} -- echo {n}")
    assert "invalid run name" in str(info.value) and "\n" not in str(info.value), str(info.value)
    assert len(runstop_nb.runs()) == before
    no_strays()


# The same kind of mistakes made at the `runstop` command line: one line on stderr, a
# non-zero exit (2 for usage, 1 otherwise), no traceback, and no runs home created.
CLI_ERRORS: dict[str, tuple[list[str], int, str]] = {  # case: (arguments, exit status, message)
    "unknown status": (["ls", "--status", "bogus"], 2, "unknown status 'bogus'; use one of running, stopping"),
    "unknown subcommand": (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
    "no subcommand": ([], 2, "the following arguments are required: COMMAND"),
    "limit not a number": (["ls", "-n", "many"], 2, "invalid int value: 'many'"),
    "stop with nothing named": (["stop"], 2, "give the runs to stop, or --all"),
    "prune with nothing named": (["worktree", "prune"], 2, "or --ended"),
    "bad --color": (["logs", "x", "--color", "pink"], 2, "invalid choice: 'pink'"),
    "unknown run": (["show", "nosuch"], 1, "no run 'nosuch' in "),
    "too short a prefix": (["logs", "abc"], 1, "an id prefix needs 4 characters or more"),
    "diff of an unknown run": (["diff", "nosuch"], 1, "`runstop ls` lists them"),
    "a home that does not exist": (["ls", "--home", "{tmp}/nowhere"], 1, "{tmp}/nowhere: no runs home there"),
    "a home that is a file": (["ls", "--home", "{tmp}/afile"], 1, "{tmp}/afile: no runs home there"),
}


@pytest.mark.parametrize("case", list(CLI_ERRORS))
def test_cli_input_error(case: str, tmp_path: Path, runs_home: Path) -> None:
    args, status, message = CLI_ERRORS[case]
    (tmp_path / "afile").write_text("not a folder\n")
    runs_home.mkdir()
    (runs_home / "history.sqlite").touch()  # an empty history: lookups reach the history
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    out = subprocess.run([str(Path(PY).parent / "runstop"), *argv], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path)
    assert out.returncode == status, out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
    assert message.replace("{tmp}", str(tmp_path)) in out.stderr, out.stderr
    assert out.stderr.startswith("runstop"), out.stderr
    assert not (tmp_path / "nowhere").exists() and not (tmp_path / ".runstop").exists()


def test_name_in_use_is_refused_while_the_first_runs(runs_home: Path) -> None:
    first = runstop_nb.start(["sleep", "1000"], name="dup")
    with pytest.raises(NameInUseError, match="already named 'dup'"):
        runstop_nb.start(["sleep", "1000"], name="dup")
    assert first.status == "running"
    no_strays()


# Lone surrogates reach Python strings from JSON ("\ud800") or careless decoding. They
# cannot be encoded for exec, so they must be refused like a NUL byte.
SURROGATES = {
    "lone surrogate in an argument": lambda: S(["echo", "\ud800"]),
    "lone surrogate in an env value": lambda: S(["true"], env={"A": "\ud800"}),
    "lone surrogate in a shell command": lambda: S("echo \ud800", shell=True),
}


@pytest.mark.parametrize("case", list(SURROGATES))
def test_unencodable_text_is_an_invalid_spec_and_spawns_nothing(case: str) -> None:
    try:
        with pytest.raises(InvalidSpecError):
            SURROGATES[case]()
        no_strays(timeout=2)
    finally:
        kill_pids(strays())


# -- what an agent can write ------------------------------------------------------------------

# The agent writes eval(OUT) to stdout and eval(ERR) to stderr; a list is written chunk by
# chunk, 0.3 s apart, so the live tail sees the split. The test evaluates the same text.
WRITER = textwrap.dedent("""
    import os, sys, time
    def put(fd, data):
        for i, chunk in enumerate(data if isinstance(data, list) else [data]):
            if i:
                time.sleep(0.3)
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
    put(1, eval(sys.argv[1]))
    put(2, eval(sys.argv[2]))
""")


@dataclass(frozen=True)
class Output:
    out: str  # a Python expression for the bytes written to stdout
    err: str = "b''"
    shows: str | None = None  # text the widget tail must show


OUTPUT_CASES: dict[str, Output] = {
    "invalid UTF-8": Output(r"b'ok \xff\xfe bad \xc3( cut \xe2\x82\n'", shows="ok"),
    "NUL bytes": Output(r"b'a\x00b\x00\n\x00\x00\x00\nend\n'", shows="end"),
    "10 MB line without a newline": Output("b'y' * (10 << 20)"),
    "output that is not text at all": Output("__import__('random').Random(7).randbytes(1 << 20)"),
    "UTF-8 character split across writes": Output(r"[b'price \xe2\x82', b'\xac 5\n']", shows="price € 5"),
    "200,000 carriage-return progress updates": Output(r"b''.join(b'\r%6d%%' % i for i in range(200000)) + b'\n'",
                                                       shows="199999%"),
    "300,000 short lines": Output(r"b''.join(b'%d\n' % i for i in range(300000))", shows="299999"),
    "cursor codes, OSC title, bell, backspace": Output(
        r"b'\x1b[2J\x1b[H\x1b]0;title\x07\x1b[31mred\x1b[0m \x08\x08ok\x0c\n'", shows="red"),
    "CRLF line endings": Output(r"b'one\r\ntwo\r\n'", shows="two"),
    "stderr only, invalid UTF-8": Output("b''", r"b'\xff\xfeerr\n'", shows="err"),
    "both streams": Output(r"b'out 1\nout 2\n'", r"b'err 1\n'", shows="err 1"),
    "5 MB line, then more lines": Output(r"b'z' * (5 << 20) + b'\nafter\n'", shows="after"),
    "6 MB of multibyte characters, no newline": Output("'€'.encode() * (2 << 20)"),
    "no output at all": Output("b''"),
}


def _joined(expr: str) -> bytes:
    value = eval(expr)
    return b"".join(value) if isinstance(value, list) else value


@pytest.mark.parametrize("case", list(OUTPUT_CASES))
def test_agent_output(case: str) -> None:
    spec = OUTPUT_CASES[case]
    out, err = _joined(spec.out), _joined(spec.err)
    run = runstop_nb.start([PY, "-c", WRITER, spec.out, spec.err])
    assert run.wait(60) == "completed", (run, run.tail(5))
    assert (run.log_dir / "stdout.log").read_bytes() == out, "the stdout log is not byte-exact"
    assert (run.log_dir / "stderr.log").read_bytes() == err, "the stderr log is not byte-exact"
    assert run.output("stdout") == out.decode("utf-8", "replace")
    assert run.output("stderr") == err.decode("utf-8", "replace")
    both = out.decode("utf-8", "replace") + err.decode("utf-8", "replace")
    if out and err:  # interleaved as the poller saw them: same characters, some order
        assert sorted(run.output()) == sorted(both)
    else:
        assert run.output() == both
    text = run.output()
    tail = run.tail(3)
    ends = text.endswith("\n")
    last = text.split("\n")[: -1 if ends else None][-3:]  # lines end at \n only (not \r, \x0b, ...)
    if len("\n".join(last).encode()) < 60_000 and all(len(line) < 4 * MAX_LINE_CHARS for line in last):
        # what a terminal shows of the last lines: carriage-return rewrites collapsed
        shown_last = [collapse_cr(line).rstrip("\r") for line in last]
        assert tail == "\n".join(shown_last) + ("\n" if shown_last and ends else "")
    else:  # huge lines: a bounded read from the end, the cut said in the text
        assert len(tail) <= 3 * (4 * MAX_LINE_CHARS + 200), len(tail)
        assert "in the log" in tail or "\r" in "".join(last), tail[:200]  # a cut is said, unless \r hid it
    assert run.bytes == len(out) + len(err)
    shown = run.buffer.lines()
    assert len(shown) <= ENDED_BOUND, f"the widget tail holds {len(shown)} lines"
    assert max((len(t) for _, t in shown), default=0) <= LINE_BOUND, "a widget line is unbounded"
    if spec.shows is not None:
        assert any(spec.shows in t for _, t in shown), (spec.shows, shown[-3:])


def test_widget_tail_stays_bounded_while_a_flood_runs() -> None:
    run = runstop_nb.start([PY, "-c", "import os\nwhile True:\n    os.write(1, b'%0100d\\n' % 7 * 1000)"])
    try:
        wait_for(lambda: run.lines > 5 * MAX_TAIL_LINES, 30, "the flood")
        for _ in range(20):  # sampled over about two seconds of flooding
            shown = run.buffer.lines()
            assert len(shown) <= MAX_TAIL_LINES + 2
            assert max((len(t) for _, t in shown), default=0) <= LINE_BOUND
            time.sleep(0.1)
    finally:
        assert run.stop(0.5).stopped
    assert len(run.buffer.lines()) <= ENDED_BOUND


# -- timing ----------------------------------------------------------------------------------


def stop_twice() -> None:
    run = runstop_nb.start(["sleep", "1000"])
    first, second = run.stop(0.5), run.stop(0.5)
    assert first.reason == "stopped" and second.reason == "already_terminal"
    assert second.signalled == 0 and not second.escalated and run.status == "cancelled"


def stop_during_start() -> None:
    stop = threading.Event()
    calls = 0

    def stopper() -> None:
        nonlocal calls
        while not stop.is_set():
            runstop_nb.stop_all(0.2)
            calls += 1

    t = threading.Thread(target=stopper)
    t.start()
    try:
        started = [runstop_nb.start(["sleep", "1000"]) for _ in range(8)]
    finally:
        stop.set()
        t.join(30)
    assert calls > 0
    for run in started:  # each was either caught by stop_all or is still running: both fine
        run.stop(0.2)
        assert run.done and run.status == "cancelled"


def exits_before_first_poll(cmd: list[str], status: str, code: int) -> Callable[[], None]:
    def check() -> None:
        run = runstop_nb.start(cmd)
        assert run.wait(10) == status
        assert run.returncode == code
    return check


def closes_stdout_and_keeps_running() -> None:
    run = runstop_nb.start([PY, "-c", "import os, time\nprint('bye', flush=True)\nos.close(1)\nos.close(2)\n"
                                      "time.sleep(1000)"])
    wait_for(lambda: "bye" in run.output(), 10, "the last words")
    assert run.wait(0.5) == "running", "closing stdout does not end a run"
    assert run.stop(0.5).stopped and run.status == "cancelled"


def exits_leaving_a_child_holding_stdout() -> None:
    run = runstop_nb.start(["sh", "-c", "sleep 1000 & echo started"])
    assert run.wait(10) == "completed", "the run ends with its root, not at stdout EOF"
    assert "started" in run.output()


def reads_stdin() -> None:
    run = runstop_nb.start([PY, "-c", "import sys; print(repr(sys.stdin.read()))"])
    assert run.wait(10) == "completed" and run.output() == "''\n"


def tiny_timeout() -> None:
    run = runstop_nb.start(["sleep", "1000"], timeout=0.001)
    assert run.wait(10) == "timed_out"


def stop_with_grace_zero() -> None:
    run = runstop_nb.start(["sleep", "1000"])
    with pytest.raises(InvalidSpecError, match="positive"):
        run.stop(grace=0)
    assert run.status == "running" and alive(run.pid or 0)


def wait_on_a_live_run() -> None:
    run = runstop_nb.start(["sleep", "1000"])
    assert run.wait(0.2) == "running"


def stop_after_natural_exit() -> None:
    run = runstop_nb.start(["true"])
    run.wait(10)
    result = run.stop()
    assert result.reason == "already_terminal" and result.signalled == 0 and run.status == "completed"


def stop_from_many_threads() -> None:
    run = runstop_nb.start(["sh", "-c", "trap '' TERM; sleep 1000 & sleep 1000"])
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(run.stop(0.3))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(r.reason for r in results) == ["already_terminal"] * 5 + ["stopped"]


TIMING_CASES: dict[str, tuple[str, Callable[[], None]]] = {
    "stopping twice": ("the second stop is already_terminal and signals nothing", stop_twice),
    "stopping during start": ("stop_all racing 8 starts: no error, every run stoppable", stop_during_start),
    "exit 0 before the first poll": ("completed, exit 0", exits_before_first_poll(["true"], "completed", 0)),
    "exit 3 before the first poll": ("failed, exit 3", exits_before_first_poll(["sh", "-c", "exit 3"], "failed", 3)),
    "SIGKILLed before the first poll": ("failed, exit -9",
                                        exits_before_first_poll(["sh", "-c", "kill -9 $$"], "failed", -9)),
    "closes stdout, keeps running": ("still running; stop works", closes_stdout_and_keeps_running),
    "exits, a child holds stdout": ("completed; the child is stopped", exits_leaving_a_child_holding_stdout),
    "reads stdin": ("reads EOF at once (stdin is /dev/null)", reads_stdin),
    "timeout of 1 ms": ("timed_out", tiny_timeout),
    "stop(grace=0)": ("InvalidSpecError; the run keeps running", stop_with_grace_zero),
    "wait on a live run": ("wait(0.2) returns 'running'", wait_on_a_live_run),
    "stop after a natural exit": ("already_terminal, nothing signalled", stop_after_natural_exit),
    "stop from 6 threads at once": ("one 'stopped', five 'already_terminal'", stop_from_many_threads),
}


@pytest.mark.parametrize("case", list(TIMING_CASES))
def test_timing(case: str) -> None:
    TIMING_CASES[case][1]()
    for run in runstop_nb.runs():
        if not run.done:
            run.stop(0.2)
        assert not cookie_alive(run.spec.cookie), f"{case}: {run!r} left processes"
    no_strays()


# Listeners run on the stopping thread. One that reacts to "stopping" by stopping its own
# run, or by stopping the whole group (stop_all), must not hang that stop.
LISTENER_DEADLOCK = textwrap.dedent("""
    import os, threading, runstop_nb
    def stop_in_thread(run):
        t = threading.Thread(target=run.stop, args=(0.2,), daemon=True)
        t.start()
        t.join(3)
        return "hung" if t.is_alive() else run.status
    me = runstop_nb.start(["sleep", "1000"], name="me")
    me.add_listener(lambda r: r.stop(0.2) if r.status == "stopping" else None)
    lead = runstop_nb.start(["sleep", "1000"], name="lead")
    runstop_nb.start(["sleep", "1000"], name="follower")
    lead.add_listener(lambda r: runstop_nb.stop_all(0.2) if r.status == "stopping" else None)
    print(stop_in_thread(me), stop_in_thread(lead), runstop_nb.get("follower").status, flush=True)
    os._exit(0)  # a hung stop_all worker would block a normal exit; the guards end the trees
""")


def test_listener_that_stops_runs_does_not_deadlock(tmp_path: Path) -> None:
    """In a child process: a deadlock there cannot hang this test's cleanup."""
    out = subprocess.run([PY, "-c", LISTENER_DEADLOCK], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, RUNSTOP_NB_HOME=str(tmp_path / "home")))
    assert out.stdout.split() == ["cancelled"] * 3, out.stdout + out.stderr


# -- fuzzing start() --------------------------------------------------------------------------
# Each example draws valid arguments, then (most of the time) spoils one of them, so the
# fuzz reaches both every check and the paths behind them (spawn, stop, logs).

word = st.text(max_size=12)  # hypothesis leaves out surrogates: they are a named case above
no_nul = st.text(st.characters(exclude_characters="\0"), max_size=10)
COMMAND = st.sampled_from(["true", "false", "echo", "cat"])
RISKY_ENV = ("PATH", "SHELL", "BASH_ENV", "ENV", "LD_", "PYTHON", "IFS", "HOME", "RUNSTOP_NB_")
env_key = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,7}\Z").filter(lambda k: not k.upper().startswith(RISKY_ENV))
VALID: dict[str, st.SearchStrategy[Any]] = {
    "cmd": st.builds(lambda c, args: [c, *args], COMMAND, st.lists(no_nul, max_size=3)),
    "name": st.none() | st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,20}\Z"),
    "cwd": st.sampled_from([None, ".", "", "/"]),
    "env": st.none() | st.dictionaries(env_key, st.none() | no_nul, max_size=3),
    "timeout": st.none() | st.floats(0.001, 5),
    "grace": st.none() | st.floats(0.001, 1),
    "shell": st.just(False),
}
seconds = st.one_of(st.floats(), st.integers(-3, 3), st.booleans(), st.text(max_size=3), st.floats(-1e-300, 0))
SPOILED: dict[str, st.SearchStrategy[Any]] = {
    "cmd": st.one_of(
        st.just([]), st.none(), st.integers(), st.binary(max_size=4), word,
        st.lists(st.one_of(st.integers(), st.none(), st.binary(max_size=2)), min_size=1, max_size=2),
        st.builds(lambda a, rest: [a, *rest], st.sampled_from(
            ["", " ", "-", "no-such-cmd", "./missing", "../", "/", "/nonexistent/x", "afile", "./afile", "true\0"]) | word,
            st.lists(word, max_size=2))),
    "name": st.one_of(st.text(max_size=70), st.integers(), st.sampled_from(["a;b", "a\nb", "n" * 65, "-x", "é", "a b"])),
    "cwd": st.one_of(st.sampled_from(["missing", "afile", "/proc/1/cwd", "\0"]), st.integers(),
                     word.filter(lambda w: not w.startswith(("/", "~")) and ".." not in w)),
    "env": st.one_of(st.dictionaries(st.text(max_size=8).filter(lambda k: not k.upper().startswith(RISKY_ENV)),
                                     st.none() | st.text(max_size=8) | st.integers(), min_size=1, max_size=3),
                     st.sampled_from([{"A=B": "x"}, {"": "x"}, {"RUNSTOP_NB_OWNER": "1:2"}, {"A": "\0"}]),
                     st.lists(st.text(max_size=4), max_size=2), st.integers()),
    "timeout": seconds,
    "grace": seconds,
    "shell": st.sampled_from([True, 0, 1, "yes", None]),
}


def settle(start: Callable[[], object], keep: tuple[str, ...] = ()) -> None:
    """Call start(); allow only runstop_nb errors; stop whatever started (but the runs named
    in ``keep``); nothing may leak."""
    before = {r.id for r in runstop_nb.runs()}
    try:
        result = start()
    except RunstopError as e:
        event(f"refused: {type(e).__name__}")
        assert "\n" not in str(e), f"a message on several lines: {e!r}"
    else:
        event("started")
        if isinstance(result, runstop_nb.Run):
            stop = result.stop(0.2)
            assert stop.reason in ("stopped", "already_terminal") and result.done, stop
    finally:
        for run in runstop_nb.runs():
            if run.done and run.id in before:
                continue  # ended before this example: checked then
            if run.name in keep and not run.done:
                continue
            if not run.done:
                run.stop(0.2)
            assert not cookie_alive(run.spec.cookie), f"{run!r} left processes"
    no_strays()


@pytest.mark.heavy
@FUZZ
@given(data=st.data())
def test_fuzz_start_arguments(jail: Path, data: st.DataObject) -> None:
    kwargs = {key: data.draw(strategy, label=key) for key, strategy in VALID.items()}
    spoil = data.draw(st.sampled_from([None, *VALID]), label="spoiled")
    if spoil is not None:
        kwargs[spoil] = data.draw(SPOILED[spoil], label=f"bad {spoil}")
    cmd = kwargs.pop("cmd")
    settle(lambda: runstop_nb.start(cmd, **kwargs))


shell_text = st.one_of(st.builds(lambda c, a: f"{c} {shlex.quote(a)}", COMMAND, no_nul), word,
                       st.sampled_from(["exit 3", "cat afile", "echo $HOME >out", "true; false", "(echo a &)", ""]))


@pytest.mark.heavy
@FUZZ
@given(cmd=shell_text, env=VALID["env"], timeout=VALID["timeout"])
def test_fuzz_start_shell_commands(jail: Path, cmd: str, env: Any, timeout: Any) -> None:
    settle(lambda: runstop_nb.start(cmd, shell=True, env=env, timeout=timeout))


def kernel_still_usable() -> None:
    assert supervisor().alive
    run = runstop_nb.start(["echo", "fine"])
    assert run.wait(10) == "completed" and run.output() == "fine\n"
    assert not registry()._reserved


# -- fuzzing the magics --------------------------------------------------------------------

needs_magics = pytest.mark.skipif(not MAGICS.exists(), reason="runstop_nb/_magics.py is not written yet")


def safe_token(t: str) -> bool:
    # Never an absolute or home path (a command could reach outside the jail), never PATH.
    return not t.lstrip("'\"").startswith(("/", "~")) and "PATH" not in t.upper() and ".." not in t


JUNK = st.sampled_from(["--name", "--cwd", "--env", "--timeout", "--grace", "--cols", "--", "-x", "--bogus", "-h",
                        "--name=", "--env=A=B", "--timeout=nan", "0", "-1", "nan", "inf", "abc", "", "''", '"', "'",
                        "\\", "$HOME", "`x`", ";", "|", "&", ">", "\n", "=x", "#", "é"]) | word.filter(safe_token)
GOOD_OPTION = st.one_of(
    st.builds(lambda n: f"--name {n}", VALID["name"].filter(bool)),
    st.sampled_from(["--timeout 5", "--timeout 0.05", "--grace 0.2", "--env A=B", "--env 'K=v w'", "--cwd .",
                     "--restart", "--shell", "--wait", "--env X="]))
COMMAND_LINE = st.builds(lambda c, args: " ".join([c, *map(shlex.quote, args)]), COMMAND,
                         st.lists(no_nul.filter(safe_token), max_size=3))
agent_run_lines = st.builds(
    lambda opts, junk, at, cmd: " ".join([*opts[:at], *junk, *opts[at:], *(["--", cmd] if cmd else [])]),
    st.lists(GOOD_OPTION, max_size=3), st.lists(JUNK, max_size=2) | st.just([]), st.integers(0, 3),
    st.none() | COMMAND_LINE)
cell_bodies = st.lists(st.one_of(
    COMMAND_LINE, COMMAND_LINE,
    st.builds(lambda n, c: f"{n}: {c}", st.sampled_from(["a", "b", "c", "x y", "é", ""]), COMMAND_LINE),
    st.sampled_from(["", "# note", "a:", ": true", "a: 'open", "   ", "b: no-such-cmd"]), JUNK), max_size=4).map("\n".join)
cell_options = st.lists(st.sampled_from(["", "--cols 2", "--cols 0", "--shell", "--timeout 5", "--grace 0.2",
                                         "--restart", "--wait", "--name x"]) | JUNK, max_size=2).map(" ".join)
stop_lines = st.lists(st.sampled_from(["--all", "--grace 0.2", "victim", "victim", "--grace", "nobody"]) | JUNK,
                      max_size=3).map(" ".join)


@pytest.fixture
def shell(jail: Path) -> Iterator[Any]:
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "runstop_nb")
    yield ip


def magic(call: Callable[[], object], shell: Any, keep: tuple[str, ...] = ()) -> None:
    from IPython.core.error import UsageError

    try:
        settle(call, keep)
    except UsageError as e:
        event("UsageError")
        assert str(e).strip(), "an empty UsageError"
        no_strays()
    assert shell.run_cell("x = 1 + 1").success and shell.user_ns["x"] == 2


@needs_magics
@pytest.mark.heavy
@FUZZ
@given(line=agent_run_lines)
def test_fuzz_agent_run_line(shell: Any, line: str) -> None:
    magic(lambda: shell.run_line_magic("agent_run", line), shell)


@needs_magics
@pytest.mark.heavy
@FUZZ
@given(options=cell_options, cell=cell_bodies)
def test_fuzz_agent_run_cell(shell: Any, options: str, cell: str) -> None:
    magic(lambda: shell.run_cell_magic("agent_run", options, cell), shell)


@needs_magics
@pytest.mark.heavy
@FUZZ
@given(line=stop_lines)
def test_fuzz_agent_stop(shell: Any, line: str) -> None:
    if not any(r.name == "victim" and not r.done for r in runstop_nb.runs()):
        runstop_nb.start([SLEEP, "1000"], name="victim")  # a fuzzed line may name it
    magic(lambda: shell.run_line_magic("agent_stop", line), shell, keep=("victim",))


def test_kernel_is_usable_after_all_that(jail: Path) -> None:
    kernel_still_usable()
    no_strays()
