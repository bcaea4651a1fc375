"""Bad arguments to start(): a typed one-line error, nothing spawned, registry unchanged."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

import pytest

import runstop_nb
from runstop_nb import _spec
from runstop_nb.errors import (
    CommandNotFoundError,
    InvalidSpecError,
    NameInUseError,
    RunNotFoundError,
    StartError,
)

from .helpers import wait_for


def no_trace(home: Path) -> None:
    runs_dir = home / "runs"
    assert not runs_dir.exists() or not any(runs_dir.iterdir()), "a failed start left a log folder"


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"cmd": ["no-such-command-xyz"]}, CommandNotFoundError, "command not found: 'no-such-command-xyz'"),
    ({"cmd": ["./missing.sh"]}, CommandNotFoundError, "'./missing.sh' does not exist"),
    ({"cmd": []}, InvalidSpecError, "empty command"),
    ({"cmd": ""}, InvalidSpecError, "cmd is a string"),
    ({"cmd": "", "shell": True}, InvalidSpecError, "non-empty string"),
    ({"cmd": ["ls"], "cwd": "/no/such/dir"}, StartError, "cwd '/no/such/dir' does not exist"),
    ({"cmd": ["ls"], "env": {"X": 1}}, InvalidSpecError, "env value for 'X' must be a str"),
    ({"cmd": ["ls"], "env": {"A=B": "1"}}, InvalidSpecError, "invalid env key 'A=B'"),
    ({"cmd": ["ls"], "env": {"RUNSTOP_NB_COOKIE": "x"}}, InvalidSpecError, "set by runstop_nb"),
    ({"cmd": ["ls"], "env": {"RUNSTOP_NB_RUN_ID": "x"}}, InvalidSpecError, "set by runstop_nb"),
    ({"cmd": ["ls"], "env": {"RUNSTOP_NB_OWNER": None}}, InvalidSpecError, "set by runstop_nb"),
    ({"cmd": ["ls"], "env": {"RUNSTOP_NB_ROLE": "guard"}}, InvalidSpecError, "set by runstop_nb"),
    ({"cmd": ["ls"], "timeout": -1}, InvalidSpecError, "timeout must be a positive"),
    ({"cmd": ["ls"], "timeout": math.nan}, InvalidSpecError, "got nan"),
    ({"cmd": ["ls"], "grace": 0}, InvalidSpecError, "grace must be a positive"),
    ({"cmd": ["ls"], "grace": "3"}, InvalidSpecError, "not str"),
    ({"cmd": ["ls"], "name": "a;rm -rf"}, InvalidSpecError, "invalid run name"),
    ({"cmd": ["ls"], "name": "two\nlines"}, InvalidSpecError, "invalid run name"),
    ({"cmd": ["ls", 3]}, InvalidSpecError, "must be a str"),
])
def test_bad_start_arguments(runs_home: Path, kwargs: dict[str, Any], error: type, message: str) -> None:
    before = runstop_nb.runs()
    cmd = kwargs.pop("cmd")
    with pytest.raises(error) as info:
        runstop_nb.start(cmd, **kwargs)
    assert message in str(info.value)
    assert "\n" not in str(info.value).strip()
    assert runstop_nb.runs() == before
    no_trace(runs_home)


def test_file_without_execute_permission(runs_home: Path, tmp_path: Path) -> None:
    script = tmp_path / "agent.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    os.chmod(script, 0o644)
    with pytest.raises(StartError, match="not an executable file"):
        runstop_nb.start([str(script)])
    no_trace(runs_home)


def test_duplicate_live_name_is_refused_then_free_after_end() -> None:
    run = runstop_nb.start(["sleep", "1000"], name="dup")
    with pytest.raises(NameInUseError, match="already named 'dup'"):
        runstop_nb.start(["sleep", "1"], name="dup")
    run.stop(grace=0.5)
    again = runstop_nb.start(["true"], name="dup")
    assert again.wait(10) == "completed"


def test_unknown_name_is_a_lookup_error() -> None:
    with pytest.raises(RunNotFoundError) as info:
        runstop_nb.get("nobody")
    assert isinstance(info.value, LookupError)
    assert "%agent_ls" in str(info.value)


def test_agent_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INHERITED_X", "yes")
    monkeypatch.setenv("DROP_ME", "1")
    run = runstop_nb.start(
        ["python3", "-c", "import os,sys; print(sorted((k, v) for k, v in os.environ.items() "
         "if k.startswith(('INHERITED_X', 'EXTRA', 'DROP_ME', 'PYTHONUNBUFFERED', 'RUNSTOP_NB_')))); "
         "print(sys.stdin.read() == '')"],
        env={"EXTRA": "1", "DROP_ME": None}, cwd=tmp_path)
    assert run.wait(10) == "completed"
    out = run.output()
    assert "('INHERITED_X', 'yes')" in out and "('EXTRA', '1')" in out and "DROP_ME" not in out
    assert "('PYTHONUNBUFFERED', '1')" in out
    assert f"('RUNSTOP_NB_COOKIE', '{run.spec.cookie}')" in out
    assert f"('RUNSTOP_NB_OWNER', '{os.getpid()}:" in out
    assert out.strip().endswith("True"), "stdin is /dev/null"


def test_pythonunbuffered_can_be_overridden() -> None:
    run = runstop_nb.start(["sh", "-c", "echo $PYTHONUNBUFFERED"], env={"PYTHONUNBUFFERED": "0"})
    run.wait(10)
    assert run.output() == "0\n"


def test_shell_string_runs_in_users_shell() -> None:
    run = runstop_nb.start("echo one && echo two | tr a-z A-Z", shell=True)
    assert run.wait(10) == "completed"
    assert run.output() == "one\nTWO\n"
    assert run.name == "echo"


def test_start_returns_once_started_and_names_default_from_script(tmp_path: Path) -> None:
    script = tmp_path / "review.py"
    script.write_text("import time; time.sleep(1000)\n")
    run = runstop_nb.start(["python3", str(script)])
    assert run.status == "running" and run.pid
    assert run.name == "review"
    wait_for(lambda: run.members(), 5, "the agent process")


def test_the_kernels_python_comes_first_on_the_agents_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """``python`` in an agent is the kernel's interpreter, as if its environment were activated."""
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # a PATH whose first python is not the kernel's
    run = runstop_nb.start(["sh", "-c", "command -v python; python -c 'import sys; print(sys.prefix)'"])
    assert run.wait(20) == "completed", run.output()
    found, prefix = run.output().split()
    assert os.path.dirname(found) == os.path.dirname(sys.executable)
    assert prefix == sys.prefix


def test_a_command_for_another_machine_is_not_looked_up_here() -> None:
    """A Ray job's node has its own PATH: its guard, not this kernel, says a command is missing."""
    with pytest.raises(CommandNotFoundError):
        _spec.build(["no-such-command-xyz"])
    assert _spec.build(["no-such-command-xyz"], here=False).argv == ("no-such-command-xyz",)
