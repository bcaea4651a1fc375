"""The magics: bad input through InteractiveShell (fast), behaviour through a real kernel."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import runstop_nb

from .helpers import AGENTS, cookie_alive, pids_with, wait_for
from .kernel import Kernel, runstop_kernel

WIDGET = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def shell() -> Iterator[InteractiveShell]:
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "runstop_nb")
    yield ip


BAD_LINES = [
    ("", "missing command"),
    ("--name x", "missing command"),
    ("--", "missing command"),
    ("--bogus -- ls", "unrecognized arguments: --bogus"),
    ("--timeout abc -- ls", "invalid float value"),
    ("--timeout -1 -- ls", "--timeout must be a positive"),
    ("--grace 0 -- ls", "--grace must be a positive"),
    ("--grace nan -- ls", "got nan"),
    ("--env NOEQUALS -- ls", "--env takes KEY=VALUE"),
    ("--env =v -- ls", "--env takes KEY=VALUE"),
    ("--name 'bad name' -- ls", "invalid run name"),
    ("--name 'x;y' -- ls", "invalid run name"),
    ("--cwd /no/such/dir -- ls", "does not exist"),
    ("-- no-such-command-xyz", "command not found: 'no-such-command-xyz'"),
    ("--cols 2 -- ls", "--cols applies to %%agent_run"),
    ("-- 'unbalanced", "No closing quotation"),
]


@pytest.mark.parametrize(("line", "message"), BAD_LINES)
def test_bad_agent_run_line_is_a_usage_error(shell: InteractiveShell, line: str, message: str) -> None:
    before = len(runstop_nb.runs())
    with pytest.raises(UsageError, match=None) as info:
        shell.run_line_magic("agent_run", line)
    assert message in str(info.value)
    assert len(runstop_nb.runs()) == before, "a bad line must start nothing"


@pytest.mark.parametrize(("options", "cell", "message"), [
    ("", "\n# only a comment\n\n", "no command lines"),
    ("", "a: ls\na: ls", "the name 'a' is used twice"),
    ("--name x", "ls", "name them as 'name: command'"),
    ("--cols 0", "ls", "--cols must be between 1 and 12"),
    ("", "ls\nno-such-command-xyz", "command not found"),
    ("", "echo 'open", "line 1: No closing quotation"),
])
def test_bad_agent_run_cell_is_a_usage_error_and_starts_nothing(
        shell: InteractiveShell, options: str, cell: str, message: str) -> None:
    before = len(runstop_nb.runs())
    with pytest.raises(UsageError) as info:
        shell.run_cell_magic("agent_run", options, cell)
    assert message in str(info.value)
    assert len(runstop_nb.runs()) == before


@pytest.mark.parametrize(("line", "message"), [
    ("", "name the runs to stop, or pass --all"),
    ("--all somebody", "not both"),
    ("nobody", "no run named 'nobody'"),
    ("--grace -2 --all", "--grace must be a positive"),
])
def test_bad_agent_stop_is_a_usage_error(shell: InteractiveShell, line: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        shell.run_line_magic("agent_stop", line)
    assert message in str(info.value)


def test_terminal_ipython_falls_back_to_text(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    shell.run_line_magic("agent_run", "--name txt --wait -- sh -c 'echo hello; echo oops >&2'")
    out, err = capsys.readouterr()
    assert "started 'txt'" in out and "hello" in out and "txt: completed (exit 0)" in out
    assert "oops" in err
    shell.run_line_magic("agent_ls", "")
    table = capsys.readouterr().out
    assert "name" in table.splitlines()[0] and "txt" in table


def test_agent_stop_prints_one_line_per_run(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    shell.run_cell_magic("agent_run", "", "s1: sleep 1000\ns2: sleep 1000")
    capsys.readouterr()
    shell.run_line_magic("agent_stop", "s1 s2 --grace 0.5")
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all("cancelled" in ln for ln in lines)


def test_unload_leaves_runs_running_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    ip = InteractiveShell.instance()
    run = runstop_nb.start(["sleep", "1000"], name="keeper")
    ip.run_line_magic("unload_ext", "runstop_nb")
    assert "keep running" in capsys.readouterr().out
    assert "agent_run" not in ip.magics_manager.magics["line"]
    assert run.status == "running"
    ip.run_line_magic("load_ext", "runstop_nb")
    assert "agent_run" in ip.magics_manager.magics["line"]
    assert runstop_nb.get("keeper") is run


def test_variables_expand_after_parsing_into_single_words(shell: InteractiveShell) -> None:
    """Issue 14.15: a variable's value can never become an option (``n = "x --shell"``)."""
    shell.user_ns.update(n="x --shell", z="a; touch /tmp/runstop-injected", who="world")
    with pytest.raises(UsageError, match="invalid run name"):
        shell.run_line_magic("agent_run", "--name {n} -- echo {z}")
    shell.run_line_magic("agent_run", "--name expanded --wait -- echo {z} $who")
    run = runstop_nb.get("expanded")
    assert run.argv == ["echo", "a; touch /tmp/runstop-injected", "world"]
    assert run.output().strip() == "a; touch /tmp/runstop-injected world"
    # with --shell the value is quoted into one word of the shell text: nothing runs from it
    shell.run_line_magic("agent_run", "--name shelled --shell --wait -- echo {z}")
    assert runstop_nb.get("shelled").output().strip() == "a; touch /tmp/runstop-injected"
    assert not os.path.exists("/tmp/runstop-injected")
    # a name that does not resolve stays as written, as IPython does for !cmd
    shell.run_line_magic("agent_run", "--name literal --wait -- echo {nosuchname}")
    assert runstop_nb.get("literal").output().strip() == "{nosuchname}"


def test_variables_expand_in_the_lines_of_a_cell_too(shell: InteractiveShell) -> None:
    shell.user_ns.update(z="a; touch /tmp/runstop-injected-cell", who="world")
    shell.run_cell_magic("agent_run", "--wait", "one: echo {z} $who\ntwo: echo {who}")
    assert runstop_nb.get("one").argv == ["echo", "a; touch /tmp/runstop-injected-cell", "world"]
    assert runstop_nb.get("two").output().strip() == "world"
    shell.run_cell_magic("agent_run", "--wait --shell", "three: echo {z}")
    assert runstop_nb.get("three").output().strip() == "a; touch /tmp/runstop-injected-cell"
    assert not os.path.exists("/tmp/runstop-injected-cell")


def test_new_options_reach_the_run(shell: InteractiveShell, tmp_path: Path) -> None:
    shell.run_line_magic(
        "agent_run", "--name opts --stdin --format text --max-tokens 5 --idle 3 -- cat")
    run = runstop_nb.get("opts")
    try:
        assert run.stdin_open
        run.send("hi\n")
        run.close_stdin()
        wait_for(lambda: run.status == "completed", 10, "cat to end after close_stdin()")
        assert run.output() == "hi\n"
        assert run.spec.format == "text" and run.spec.max_tokens == 5 and run.spec.idle == 3
    finally:
        run.stop()
    shell.run_line_magic("agent_run", "--name tty --pty --wait -- sh -c 'test -t 1 && echo terminal'")
    assert "terminal" in runstop_nb.get("tty").output()


@pytest.mark.parametrize(("line", "message"), [
    ("--max-cost abc -- ls", "invalid float value"),
    ("--format yaml -- ls", "invalid choice: 'yaml'"),
    ("--idle 0 -- ls", "--idle must be a positive"),
    ("--containment box -- ls", "invalid choice: 'box'"),
    ("--num-cpus 2 -- ls", "--num-cpus need(s) --backend ray"),
    ("--detach --ray-address http://h:8265 -- ls", "--ray-address, --detach need(s) --backend ray"),
    ("--backend k8s -- ls", "invalid choice: 'k8s'"),
    ("--backend ray --num-gpus -1 -- ls", "--num-gpus takes a number of at least 0"),
    ("--backend ray --resources tpu -- ls", "--resources takes NAME=N"),
    ("--backend ray --resources tpu=x -- ls", "--resources takes NAME=N"),
    ("--backend ray --resources =2 -- ls", "--resources takes NAME=N"),
])
def test_bad_new_options_are_usage_errors(shell: InteractiveShell, line: str, message: str) -> None:
    before = len(runstop_nb.runs())
    with pytest.raises(UsageError) as info:
        shell.run_line_magic("agent_run", line)
    assert message in str(info.value)
    assert len(runstop_nb.runs()) == before


def test_ray_backend_without_an_address_is_a_usage_error_before_anything_starts(
        shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RUNSTOP_NB_RAY_ADDRESS", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    before = len(runstop_nb.runs())
    with pytest.raises(UsageError, match="no Ray address: pass ray_address="):
        shell.run_line_magic("agent_run", "--backend ray --num-cpus 1 -- ls")
    assert len(runstop_nb.runs()) == before


def test_ray_options_become_starts_arguments(shell: InteractiveShell) -> None:
    from runstop_nb._magics import AgentMagics

    magics = shell.magics_manager.registry[AgentMagics.__name__]
    args = _parse_for(magics, "--backend ray --ray-address h:8265 --num-cpus 2 --num-gpus 0.5 "
                      "--resources tpu=1 --resources disk=2.5 --working-dir . --detach -- ls")
    assert magics._ray_options(args) == {
        "backend": "ray", "ray_address": "h:8265",
        "ray_options": {"num_cpus": 2.0, "num_gpus": 0.5, "resources": {"tpu": 1.0, "disk": 2.5},
                        "runtime_env": {"working_dir": "."}, "detach": True}}
    assert magics._ray_options(_parse_for(magics, "-- ls")) == {}


def _parse_for(magics: Any, line: str) -> Any:
    from runstop_nb._magics import _parse

    return _parse(magics.agent_run, line)


# -- real kernel ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def k(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    yield from runstop_kernel(tmp_path_factory.mktemp("khome"), "%load_ext runstop_nb\nimport runstop_nb")


def pids_of(k: Kernel, names: list[str]) -> dict[str, int]:
    return {n: k.eval(f"runstop_nb.get({n!r}).pid") for n in names}


def tree_dead(k: Kernel, name: str) -> bool:
    return cookie_alive(k.eval(f"runstop_nb.get({name!r}).spec.cookie")) == []


@pytest.mark.kernel
@pytest.mark.parametrize("how", ["%agent_stop one_term", "runstop_nb.get('one_term').stop()"])
def test_a_stop_in_a_kernel_sends_exactly_one_sigterm(k: Kernel, how: str) -> None:
    """In a kernel, as in a script: many CLIs take a second SIGTERM as "force quit now"."""
    agent = ("import signal, time\n"
             "def h(s, f): print('got signal', s, flush=True)\n"
             "signal.signal(signal.SIGTERM, h)\nprint('ready', flush=True)\nwhile True: time.sleep(0.05)\n")
    k.ok(f"r = runstop_nb.start(['python', '-c', {agent!r}], name='one_term', grace=0.5)")
    wait_for(lambda: "ready" in k.eval("r.output()"), 10, "the handler")
    k.ok(how)
    assert k.eval("r.wait(10)") == "cancelled"
    assert k.eval("r.output().count('got signal 15')") == 1, k.eval("r.output()")


@pytest.mark.kernel
def test_magic_starts_an_agent_and_shows_its_widget(k: Kernel) -> None:
    reply = k.ok("%agent_run --name one -- python agents/counter.py --lines 5 --interval 0.01")
    assert any(WIDGET in d for d in reply.data), "the run widget is displayed"
    assert k.eval("runstop_nb.get('one').wait(20)") == "completed"
    assert "line 00005" in k.eval("runstop_nb.get('one').output()")


@pytest.mark.kernel
def test_grid_of_eight_parallel_agents_then_stop_one_then_all(k: Kernel) -> None:
    cell = "\n".join(f"g{i}: python agents/stubborn.py" if i == 0 else f"g{i}: sleep 1000" for i in range(8))
    reply = k.ok(f"%%agent_run --cols 4 --grace 0.3\n{cell}")
    assert sum(WIDGET in d for d in reply.data) == 1, "one grid for the whole cell"
    names = [f"g{i}" for i in range(8)]
    assert set(k.eval(f"[runstop_nb.get(n).status for n in {names}]")) == {"running"}
    wait_for(lambda: "still here" in k.eval("runstop_nb.get('g0').output()"), 20, "stubborn's handler")
    reply = k.ok("%agent_stop g0")
    assert "g0: cancelled" in reply.stdout and "SIGKILL needed" in reply.stdout
    assert tree_dead(k, "g0")
    assert k.eval("runstop_nb.get('g1').status") == "running"
    reply = k.ok("%agent_stop --all")
    assert reply.stdout.count("cancelled") >= 7
    assert all(tree_dead(k, n) for n in names)


@pytest.mark.kernel
def test_rerunning_a_cell_reattaches_then_restart_replaces(k: Kernel) -> None:
    cell = "%%agent_run\nre1: sleep 1000\nsleep 1000"
    k.ok(cell)
    runs_before = k.eval("len(runstop_nb.runs())")
    first = k.eval("[(r.name, r.pid) for r in runstop_nb.runs() if not r.done]")
    reply = k.ok(cell)
    assert "already running" in reply.stdout and "--restart" in reply.stdout
    assert any(WIDGET in d for d in reply.data), "the same runs are shown again"
    assert k.eval("len(runstop_nb.runs())") == runs_before, "nothing new was spawned"
    assert k.eval("[(r.name, r.pid) for r in runstop_nb.runs() if not r.done]") == first
    old_cookies = k.eval("[r.spec.cookie for r in runstop_nb.runs() if not r.done]")
    k.ok("%%agent_run --restart\nre1: sleep 1000\nsleep 1000")
    now = k.eval("[(r.name, r.pid) for r in runstop_nb.runs() if not r.done]")
    assert len(now) == 2 and not set(p for _, p in now) & set(p for _, p in first)
    assert all(cookie_alive(c) == [] for c in old_cookies), "--restart verified the old trees dead"
    k.ok("%agent_stop --all")


@pytest.mark.kernel
def test_wait_then_interrupt_stops_the_run_with_one_line(k: Kernel) -> None:
    msg_id = k.kc.execute("%agent_run --name fg --wait -- python agents/spawner.py")
    owner = f"RUNSTOP_NB_OWNER={k.pid}:".encode()

    def agent_pids() -> list[int]:
        out = []
        for pid in pids_with(owner):
            try:
                if "spawner" in " ".join(psutil.Process(pid).cmdline()):
                    out.append(pid)
            except psutil.Error:
                pass
        return out

    wait_for(agent_pids, 20, "the foreground agent")
    time.sleep(0.5)  # let it spawn its children before the interrupt
    k.km.interrupt_kernel()
    stdout, error = "", ""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        msg = k.kc.get_iopub_msg(timeout=30)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            stdout += msg["content"]["text"]
        elif msg["msg_type"] == "error":
            error = msg["content"]["ename"]
        elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    assert not error, f"an interrupted --wait must not end in a traceback ({error})"
    assert stdout.strip().startswith("interrupted: fg: cancelled"), stdout
    assert len(stdout.strip().splitlines()) == 1
    assert tree_dead(k, "fg")
    assert k.eval("1 + 1") == 2, "the kernel stays usable"


@pytest.mark.kernel
def test_agents_never_receive_the_kernel_interrupt(k: Kernel) -> None:
    k.ok("%agent_run --name bystander -- sleep 1000")
    msg_id = k.kc.execute("import time; time.sleep(30)")
    time.sleep(0.5)
    k.km.interrupt_kernel()
    while True:
        msg = k.kc.get_iopub_msg(timeout=30)
        if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                and msg["content"]["execution_state"] == "idle"):
            break
    assert k.eval("runstop_nb.get('bystander').status") == "running"
    pid = k.eval("runstop_nb.get('bystander').pid")
    assert psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    k.ok("%agent_stop bystander")


@pytest.mark.kernel
def test_ls_lists_every_run(k: Kernel) -> None:
    k.ok("%agent_run --name listed -- sleep 1000")
    reply = k.ok("%agent_ls")
    text = reply.data[-1]["text/plain"]
    assert text.splitlines()[0].split() == ["name", "status", "elapsed", "lines", "exit", "command", "log"]
    assert "listed" in text and "running" in text and "sleep 1000" in text
    assert "runstop-table" in reply.data[-1]["text/html"]
    k.ok("%agent_stop listed")


@pytest.mark.kernel
def test_reload_ext_keeps_live_runs_reachable(k: Kernel) -> None:
    k.ok("%agent_run --name reloaded -- sleep 1000")
    pid = k.eval("runstop_nb.get('reloaded').pid")
    k.ok("%reload_ext runstop_nb")
    assert k.eval("runstop_nb.get('reloaded').pid") == pid
    k.ok("%agent_stop reloaded")
    assert tree_dead(k, "reloaded")


def test_cwd_is_the_agents_folder_for_relative_paths() -> None:
    assert (AGENTS / "counter.py").exists() and os.path.isdir(Path(AGENTS).parent)


def test_an_unexpected_start_failure_is_a_usage_error_and_leaves_nothing(
        shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not only RunstopError: whatever start() raises ends as one line, no run left behind."""
    import runstop_nb._magics as magics

    def broken(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", "/somewhere/.runstop")

    monkeypatch.setattr(magics, "start", broken)
    before = len(runstop_nb.runs())
    with pytest.raises(UsageError) as info:
        shell.run_line_magic("agent_run", "-- sleep 1")
    assert str(info.value).startswith("PermissionError: ") and "\n" not in str(info.value)
    assert len(runstop_nb.runs()) == before


def test_three_agents_with_worktree_each_change_only_their_own_copy(shell: InteractiveShell, tmp_path: Path) -> None:
    """Issue 17: a cell of agents with --worktree, all editing the same file of one repository."""
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                       capture_output=True)

    git("init", "-q", "-b", "main")
    (repo / "shared.txt").write_text("one\ntwo\nthree\n")
    git("add", ".")
    git("commit", "-q", "-m", "start")
    cell = "\n".join(f"wt{i}: sh -c 'echo by-agent-{i} >> shared.txt'" for i in range(3))
    shell.run_cell_magic("agent_run", f"--worktree --wait --cwd {repo}", cell)
    runs = [runstop_nb.get(f"wt{i}") for i in range(3)]
    try:
        for i, run in enumerate(runs):
            assert run.status == "completed", run
            diff = run.diff()
            assert f"+by-agent-{i}" in diff
            assert all(f"by-agent-{j}" not in diff for j in range(3) if j != i), diff
            assert [(f.path, f.added, f.removed) for f in run.diffstat()] == [("shared.txt", 1, 0)]
        assert (repo / "shared.txt").read_text() == "one\ntwo\nthree\n", "the repository itself is untouched"
        assert len({run.worktree.path for run in runs if run.worktree is not None}) == 3
    finally:
        for run in runs:
            run.discard(force=True)
