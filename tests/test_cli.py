"""The ``runstop`` console script, run as a real process against a real history."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import runstop_nb
from runstop_nb._proc import procfs
from runstop_nb._status import STATUSES
from runstop_nb._terminal import plain

from .helpers import AGENTS, PY, alive, cookie_alive, kill_pids, wait_for
from .kernel import kernel
from .orphans import make_orphan, other_process_run

RUNSTOP = str(Path(sys.executable).parent / "runstop")
COUNTER = str(AGENTS / "counter.py")


def cli(*args: str, cwd: Path | None = None, timeout: float = 60,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``runstop ARGS``; its output decoded as is (text mode would turn ``\\r`` into newlines)."""
    out = subprocess.run([RUNSTOP, *args], capture_output=True, timeout=timeout, cwd=cwd, env=env)
    return subprocess.CompletedProcess(out.args, out.returncode, out.stdout.decode(), out.stderr.decode())


def finished(cmd: list[str], name: str) -> runstop_nb.Run:
    run = runstop_nb.start(cmd, name=name)
    run.wait(30)
    return run


def test_ls_lists_the_runs_of_this_home(runs_home: Path, tmp_path: Path) -> None:
    done = finished([PY, "-c", "print('hi')"], "said-hi")
    live = runstop_nb.start(["sleep", "1000"], name="sleeper")
    out = cli("ls")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:3] == ["ID", "NAME", "STATUS"]
    assert lines[1].split()[:3] == [live.id, "sleeper", "running"], "newest first"
    assert lines[2].split()[:4] == [done.id, "said-hi", "completed", "0"]
    rows = json.loads(cli("ls", "--json").stdout)
    assert [(r["id"], r["status"], r["pid"]) for r in rows] == [(live.id, "running", live.pid),
                                                                (done.id, "completed", done.pid)]
    assert [r["id"] for r in json.loads(cli("ls", "--json", "--status", "completed").stdout)] == [done.id]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env_free = subprocess.run([RUNSTOP, "--home", str(runs_home), "ls"], capture_output=True, text=True,
                              cwd=elsewhere, env={k: v for k, v in os.environ.items() if k != "RUNSTOP_NB_HOME"})
    assert done.id in env_free.stdout and live.id in env_free.stdout


def test_ls_and_show_without_a_history(tmp_path: Path) -> None:
    nothing = tmp_path / "nothing-here"
    out = cli("--home", str(nothing), "ls")
    assert out.returncode == 1 and out.stderr == f"runstop: {nothing}: no runs home there\n"
    assert not nothing.exists(), "the CLI must never create a runs home"
    out = cli("show", "abcdef", "--home", str(nothing))
    assert out.returncode == 1 and out.stderr == f"runstop: {nothing}: no runs home there\n"
    assert not nothing.exists()


def test_show_prints_metadata_and_the_tail() -> None:
    run = finished([PY, COUNTER, "--lines", "30", "--interval", "0.005"], "counted")
    out = cli("show", "counted", "-n", "3")
    assert out.returncode == 0, out.stderr
    fields = dict(line.split(None, 1) for line in out.stdout.split("\n\n")[0].splitlines() if " " in line)
    assert fields["id"] == run.id and fields["status"] == "completed (exit 0)"
    assert fields["pid"] == str(run.pid) and fields["logs"] == str(run.log_dir)
    assert fields["output"].startswith(f"{run.lines} lines")
    tail = out.stdout.split("--- last 3 lines ---\n")[1]
    assert "\x1b[" in run.tail(3), "the counter colours its last line"
    assert tail == plain(run.tail(3)) and "done" in tail, "piped: no colour codes"
    coloured = cli("show", "counted", "-n", "3", "--color", "always").stdout
    assert coloured.split("--- last 3 lines ---\n")[1] == run.tail(3)


def test_logs_prints_the_output_and_follow_ends_with_the_run() -> None:
    done = finished([PY, COUNTER, "--lines", "12", "--interval", "0.005", "--progress-every", "5"], "logged")
    out = cli("logs", done.id, "--raw")
    assert out.returncode == 0 and out.stdout == done.output()
    assert cli("logs", done.id, "--stream", "stderr", "--raw").stdout == done.output("stderr")
    run = runstop_nb.start([PY, COUNTER, "--lines", "40", "--interval", "0.05"], name="followed")
    follow = subprocess.Popen([RUNSTOP, "logs", "-f", "--raw", run.id], stdout=subprocess.PIPE)
    try:
        raw, _ = follow.communicate(timeout=60)  # returns only because the run ended
    finally:
        kill_pids([follow.pid])
    text = raw.decode()
    assert run.wait(10) == "completed"
    assert follow.returncode == 0
    assert "line 00040" in text and "done\x1b[0m" in text
    assert sorted(text.splitlines()) == sorted(run.output().splitlines()), "every line exactly once"


def test_stop_asks_a_live_kernel_to_stop_its_run() -> None:
    run = runstop_nb.start(["sleep", "1000"], name="remote-stopped")  # this process is its live kernel
    out = cli("stop", run.id)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "stopped by its kernel" in out.stdout and "cancelled" in out.stdout
    assert run.status == "cancelled" and run.last_stop is not None and run.last_stop.stopped
    assert not cookie_alive(run.spec.cookie)
    out = cli("stop", run.id)
    assert out.returncode == 0 and "already cancelled" in out.stdout


def test_stop_falls_back_to_the_cookie_when_the_kernel_does_not_act() -> None:
    with other_process_run(["sleep", "1000"], name="hung-kernel") as owner:
        owner.proc.send_signal(signal.SIGSTOP)  # alive, but it can act on nothing
        try:
            t0 = time.monotonic()
            out = cli("stop", owner.id, "--grace", "0.5")
            took = time.monotonic() - t0
        finally:
            owner.proc.send_signal(signal.SIGCONT)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "did not act in time; stopped by cookie" in out.stdout
        assert took < 15
        assert not cookie_alive(owner.cookie)


def test_stop_on_a_dead_kernels_run_stops_it_by_cookie(tmp_path: Path) -> None:
    orphan = make_orphan(tmp_path, name="dead-owner")
    try:
        out = cli("stop", "dead-owner")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "kernel was dead; stopped by cookie" in out.stdout
        assert not alive(orphan.pid) and not cookie_alive(orphan.cookie)
        past = runstop_nb.load(orphan.id)
        assert past.status == "cancelled" and past.last_stop is not None and past.last_stop.stopped
    finally:
        kill_pids(cookie_alive(orphan.cookie))


def test_stop_all_stops_live_and_orphaned_runs(tmp_path: Path) -> None:
    orphan = make_orphan(tmp_path)
    live = runstop_nb.start(["sleep", "1000"], name="alive-one")
    done = finished([PY, "-c", "pass"], "over")
    try:
        out = cli("stop", "--all")
        assert out.returncode == 0, out.stdout + out.stderr
        assert len(out.stdout.splitlines()) == 2 and done.name not in out.stdout
        assert live.status == "cancelled" and not cookie_alive(orphan.cookie)
        assert {r.status for r in runstop_nb.history()} == {"cancelled", "completed"}
    finally:
        kill_pids(cookie_alive(orphan.cookie))


def test_stop_needs_ids_or_all() -> None:
    out = cli("stop")
    assert out.returncode == 2 and "--all" in out.stderr


def test_reap_lists_then_stops_orphans(tmp_path: Path) -> None:
    orphan = make_orphan(tmp_path, env={"RUNSTOP_NB_HOME": str(tmp_path / "another" / ".runstop")})
    try:
        out = cli("reap", "--dry-run", orphan.id)
        assert out.returncode == 0 and f"orphan ({orphan.id})" in out.stdout and str(orphan.pid) in out.stdout
        assert "from elsewhere" in out.stdout and alive(orphan.pid)
        out = cli("reap", orphan.id, "--grace", "0.5")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "cancelled" in out.stdout and not cookie_alive(orphan.cookie)
        assert "no orphaned" in cli("reap", "--dry-run", orphan.id).stdout
    finally:
        kill_pids(cookie_alive(orphan.cookie))


@pytest.mark.parametrize("args", [["--help"], ["ls", "--help"]])
def test_help_works(args: list[str]) -> None:
    out = cli(*args)
    assert out.returncode == 0 and "runstop" in out.stdout


# -- issue 14 item 8: \r and colours ------------------------------------------------------

PROGRESS = ("import sys\n"
            "print('\\x1b[32mgreen\\x1b[0m start', flush=True)\n"
            "for p in range(0, 101, 25):\n"
            "    sys.stdout.write(f'\\rbar {p}%'); sys.stdout.flush()\n"
            "print()\n"
            "print('\\x1b[1mdone\\x1b[0m')\n")


def test_show_and_logs_collapse_progress_frames_and_drop_colours_when_piped() -> None:
    run = finished([PY, "-c", PROGRESS], "progress")
    raw = run.output()
    assert "\r" in raw and "\x1b[" in raw
    expected = ["green start", "bar 100%", "done"]  # what a terminal shows once the run is over
    out = cli("logs", "progress")
    assert out.returncode == 0 and out.stdout.splitlines() == expected, out.stdout
    assert cli("logs", "progress", "--color", "never").stdout == out.stdout
    coloured = cli("logs", "progress", "--color", "always").stdout
    assert "\x1b[32mgreen" in coloured and "\r" not in coloured and plain(coloured) == out.stdout
    assert cli("logs", "progress", "--raw").stdout == raw, "--raw is byte-exact"
    shown = cli("show", "progress", "-n", "3").stdout.split("--- last 3 lines ---\n")[1]
    assert shown.splitlines() == expected


# -- issue 14 item 13: what was asked, what was found ------------------------------------


def test_ls_says_what_was_asked_and_what_was_found(runs_home: Path) -> None:
    done = finished([PY, "-c", "pass"], "only-one")
    out = cli("ls", "--status", "running")
    assert out.returncode == 0 and out.stdout == ""
    assert out.stderr == f"no runs in status running in {runs_home} (1 run recorded)\n"
    out = cli("ls", "--name", "nosuch")
    assert out.stderr == f"no runs named 'nosuch' in {runs_home} (1 run recorded)\n"
    out = cli("ls", "--status", "bogus")
    assert out.returncode == 2 and len(out.stderr.splitlines()) == 1
    assert "unknown status 'bogus'" in out.stderr and ", ".join(STATUSES) in out.stderr
    assert "[" not in out.stderr, "not a Python list"
    out = cli("show", "nosuch")
    assert out.returncode == 1 and len(out.stderr.splitlines()) == 1
    assert "`runstop ls` lists them" in out.stderr and "history()" not in out.stderr
    assert "(1 run recorded)" in out.stderr
    out = cli("show", done.id[:3])
    assert "an id prefix needs 4 characters or more" in out.stderr
    assert cli("show", done.id[:4]).returncode == 0
    for args in (["show", "--help"], ["--help"]):
        assert "prefix (4 characters or more)" in " ".join(cli(*args).stdout.split())


def test_home_is_accepted_before_or_after_the_subcommand(runs_home: Path, tmp_path: Path) -> None:
    done = finished([PY, "-c", "pass"], "homed")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for args in (["--home", str(runs_home), "ls"], ["ls", "--home", str(runs_home)],
                 ["ls", "--json", "--home", str(runs_home), "--name", "homed"]):
        out = cli(*args, cwd=elsewhere, env=without_home())
        assert out.returncode == 0 and done.id in out.stdout, (args, out.stderr)


def test_ls_is_newest_first_with_short_commands_within_100_columns(runs_home: Path) -> None:
    first = finished([PY, "-c", "print('a' * 300)", "x" * 150], "first-with-a-rather-long-name")
    second = finished([PY, COUNTER, "--lines", "1"], "second")
    lines = cli("ls").stdout.splitlines()
    assert [line.split()[0] for line in lines[1:]] == [second.id, first.id]
    assert all(len(line) <= 100 for line in lines), lines
    command = lines[1][lines[0].index("COMMAND"):]
    assert command.startswith(f"{Path(PY).name} "), "the program by its name"
    assert str(AGENTS) not in lines[1] and "/work" not in command, "paths are said short"
    assert lines[2].endswith("…")


# -- issue 14 item 18: finding the runs home ---------------------------------------------


def without_home(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RUNSTOP_NB_HOME"}
    return {**env, **extra}


def server_file(runtime: Path, pid: int, root: Path) -> None:
    """A Jupyter server's runtime file, as jupyter_server writes it (the fields the CLI reads)."""
    runtime.mkdir(exist_ok=True)
    (runtime / f"jpserver-{pid}.json").write_text(json.dumps({
        "base_url": "/", "hostname": "localhost", "pid": pid, "port": 8888, "root_dir": str(root),
        "secure": False, "sock": "", "token": "secret", "url": "http://localhost:8888/", "version": "2.14.2"}))


def test_the_cli_finds_the_runs_home_of_a_running_jupyter_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "project"
    demo_home = root / "notebooks" / ".runstop"
    monkeypatch.setenv("RUNSTOP_NB_HOME", str(demo_home))
    done = finished([PY, "-c", "pass"], "demo-run")
    runtime, elsewhere = tmp_path / "runtime", tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = without_home(JUPYTER_RUNTIME_DIR=str(runtime))
    out = cli("ls", cwd=elsewhere, env=env)
    assert out.returncode == 1 and len(out.stderr.splitlines()) == 1
    assert out.stderr.startswith("runstop: no runs home found: looked in ") and str(elsewhere) in out.stderr
    dead = subprocess.run([PY, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    server_file(runtime, int(dead.stdout), root)  # a crashed server's leftover file is ignored
    assert cli("ls", cwd=elsewhere, env=env).returncode == 1
    server_file(runtime, os.getpid(), root)  # this live process stands in for the server
    out = cli("ls", cwd=elsewhere, env=env)
    assert out.returncode == 0 and done.id in out.stdout, out.stderr
    assert out.stderr == (f"runstop: using runs home {demo_home} (found in the folder of the Jupyter server "
                          f"at {root})\n")
    out = cli("ls", cwd=root, env=without_home(JUPYTER_RUNTIME_DIR=str(tmp_path / "none")))
    assert done.id in out.stdout and "found in a subfolder of" in out.stderr
    other = root / "other" / ".runstop"
    other.mkdir(parents=True)
    (other / "history.sqlite").write_bytes((demo_home / "history.sqlite").read_bytes())
    out = cli("ls", cwd=elsewhere, env=env)
    assert out.returncode == 1 and len(out.stderr.splitlines()) == 1
    assert "several runs homes found" in out.stderr and str(other) in out.stderr and "--home" in out.stderr
    (elsewhere / ".runstop").mkdir()
    out = cli("ls", cwd=elsewhere, env=env)  # ./.runstop wins over any search
    assert out.returncode == 0 and "no runs in" in out.stderr and "using runs home" not in out.stderr
    out = cli("ls", "--home", str(root / "notebooks"), cwd=elsewhere, env=env)
    assert out.returncode == 1 and f"pass --home {demo_home}" in out.stderr


# -- issue 14 item 13: names in reap and stop; two kernels, one name ---------------------


def test_reap_accepts_a_run_name(tmp_path: Path, runs_home: Path) -> None:
    orphan = make_orphan(tmp_path, name="reap-me", env={"RUNSTOP_NB_HOME": str(runs_home)})
    try:
        out = cli("reap", "--dry-run", "reap-me")
        assert f"reap-me ({orphan.id})" in out.stdout and alive(orphan.pid)
        out = cli("reap", "reap-me", "--grace", "0.5")
        assert out.returncode == 0 and "cancelled" in out.stdout, out.stdout + out.stderr
        assert not cookie_alive(orphan.cookie)
        assert "no orphaned runstop_nb processes match reap-me" in cli("reap", "reap-me").stdout
    finally:
        kill_pids(cookie_alive(orphan.cookie))


@pytest.mark.kernel
def test_stop_by_a_name_two_kernels_use_stops_the_latest_and_names_the_other(tmp_path: Path, runs_home: Path) -> None:
    env = {"RUNSTOP_NB_HOME": str(runs_home)}
    cookies: list[str] = []
    try:
        with kernel(tmp_path, env) as k1, kernel(tmp_path, env) as k2:
            infos = []
            for k in (k1, k2):
                k.ok("import runstop_nb\nrun = runstop_nb.start(['sleep', '1000'], name='twin')")
                infos.append(k.eval("dict(id=run.id, cookie=run.spec.cookie)"))
                cookies.append(infos[-1]["cookie"])
            older, latest = infos
            out = cli("stop", "twin", "--grace", "0.5")
            assert out.returncode == 0, out.stdout + out.stderr
            assert out.stdout.startswith("twin: cancelled") and "stopped by its kernel" in out.stdout
            assert f"note: twin ({older['id']}" in out.stdout and f"`runstop stop {older['id']}`" in out.stdout
            assert k2.eval("run.status") == "cancelled" and not cookie_alive(latest["cookie"])
            assert k1.eval("run.status") == "running" and cookie_alive(older["cookie"])
            assert cli("stop", older["id"], "--grace", "0.5").returncode == 0
            assert k1.eval("run.status") == "cancelled" and not cookie_alive(older["cookie"])
    finally:
        for cookie in cookies:
            kill_pids(cookie_alive(cookie))


# -- issue 14 items 13 and 14: other users ----------------------------------------------

SETPRIV = shutil.which("setpriv")
NOBODY, THIRD = 65534, 65533  # the agents' user, and a user that is neither it nor root


def as_user(uid: int, argv: list[str], env: dict[str, str], cwd: Path, stdin: int | None = None,
            ) -> subprocess.Popen[bytes]:
    assert SETPRIV is not None
    return subprocess.Popen([SETPRIV, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv], env=env,
                            cwd=cwd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def cli_as(uid: int, *args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = as_user(uid, [RUNSTOP, *args], env, cwd)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out.decode(), err.decode())


def user_pids(uid: int, needle: bytes) -> list[int]:
    """Live pids of ``uid`` whose environment holds ``needle`` (root reads every user's)."""
    return [pid for pid, _ in procfs.scan(needle, uid=uid) if alive(pid)]


needs_other_users = pytest.mark.skipif(SETPRIV is None or os.geteuid() != 0,
                                       reason="needs root and setpriv(1) to run processes as other users")


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A folder other users can reach (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="runstop-users-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@needs_other_users
def test_an_unreadable_runs_home_is_one_line_and_start_raises_start_error(shared_tmp: Path) -> None:
    home = shared_tmp / "home"
    home.mkdir()
    os.chown(home, NOBODY, NOBODY)
    home.chmod(0o000)
    env = without_home(RUNSTOP_NB_HOME=str(home))
    for args in (["ls"], ["stop", "--all"], ["show", "x"]):
        out = cli_as(NOBODY, *args, env=env, cwd=shared_tmp)
        assert out.returncode == 1, out
        assert out.stderr.splitlines() == [f"runstop: {home}: cannot read this runs home (permission denied: "
                                           f"mode 000, owner uid {NOBODY}); fix its permissions or run as a "
                                           "user who can read it"], out.stderr
    probe = ("import json, runstop_nb\n"
             "try:\n    runstop_nb.start(['sleep', '1000'], name='nope')\n"
             "except Exception as e:\n"
             "    print(json.dumps([type(e).__name__, isinstance(e, runstop_nb.StartError), str(e), "
             "len(runstop_nb.runs())]))\n")
    proc = as_user(NOBODY, [PY, "-c", probe], env, shared_tmp)
    said, err = proc.communicate(timeout=60)
    name, typed, message, registered = json.loads(said)
    assert typed and name == "StartError" and "\n" not in message and "runs home" in message, (said, err)
    assert registered == 0
    home.chmod(0o700)
    assert list(home.iterdir()) == [] and stat.S_IMODE(home.stat().st_mode) == 0o700, "nothing half-made"
    assert not user_pids(NOBODY, b"RUNSTOP_NB_COOKIE=")


@needs_other_users
def test_another_users_orphan_is_found_by_root_and_cannot_be_checked_by_a_third_user(shared_tmp: Path) -> None:
    # The agent switches to uid 65534 (as `sudo -u` would) and keeps its cookie; its kernel dies.
    home = shared_tmp / "home"
    assert SETPRIV is not None
    agent = [SETPRIV, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "sleep", "1000"]
    orphan = make_orphan(shared_tmp, cmd=agent, name="theirs", env={"RUNSTOP_NB_HOME": str(home)})
    env = without_home(RUNSTOP_NB_HOME=str(home))
    try:
        assert psutil.Process(orphan.pid).uids().real == NOBODY
        for path in [home, *home.rglob("*")]:  # the third user may read and lock the history
            path.chmod(0o777 if path.is_dir() else 0o666)

        out = cli_as(THIRD, "ls", env=env, cwd=shared_tmp)
        assert out.returncode == 0, out.stderr
        assert "running?" in out.stdout and f"belong to uid {NOBODY}" in out.stdout, out.stdout
        assert "cannot be checked" in out.stdout and "lost" not in out.stdout
        out = cli_as(THIRD, "stop", "theirs", env=env, cwd=shared_tmp)
        assert out.returncode == 1 and "cannot be checked from here" in out.stdout, out.stdout + out.stderr
        assert "nothing to stop" not in out.stdout and alive(orphan.pid)

        out = cli("ls", env=env)  # root reads every user's processes: an orphan, not lost
        assert out.stdout.splitlines()[1].split()[:3] == [orphan.id, "theirs", "orphaned"], out.stdout
        out = cli("stop", "theirs", "--grace", "0.5", env=env)
        assert out.returncode == 0 and "stopped by cookie" in out.stdout, out.stdout + out.stderr
        wait_for(lambda: not alive(orphan.pid), 10, "the other user's agent to die")
    finally:
        kill_pids([orphan.pid, *user_pids(NOBODY, f"RUNSTOP_NB_COOKIE={orphan.cookie}".encode())])


# -- issue 17: diff and worktree prune ----------------------------------------------------


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "a.txt").write_text("one\n")
    git(path, "add", "a.txt")
    git(path, "commit", "-q", "-m", "first")
    return path


def test_diff_shows_a_worktree_runs_changes_and_prune_keeps_dirty_ones(repo: Path) -> None:
    edit = [PY, "-c", "open('a.txt', 'a').write('two\\n')"]
    dirty = runstop_nb.start(edit, name="edits", cwd=repo, worktree=True)
    clean = runstop_nb.start([PY, "-c", "pass"], name="reads", cwd=repo, worktree=True)
    assert dirty.wait(30) == "completed" and clean.wait(30) == "completed"
    plain_run = finished([PY, "-c", "pass"], "no-tree")
    out = cli("diff", "edits")
    assert out.returncode == 0 and "+two" in out.stdout and out.stdout == dirty.diff()
    out = cli("diff", "edits", "--stat")
    assert "modified" in out.stdout and "+1 -0" in out.stdout and "a.txt" in out.stdout
    out = cli("diff", plain_run.id)
    assert out.returncode == 1 and len(out.stderr.splitlines()) == 1 and "had no worktree" in out.stderr
    tree_d, tree_c = dirty.worktree, clean.worktree
    assert tree_d is not None and tree_c is not None

    out = cli("worktree", "prune", "edits", "reads")
    assert out.returncode == 1
    assert "kept" in out.stderr and "uncommitted changes in a.txt" in out.stderr
    assert os.path.isdir(tree_d.path) and tree_d.branch in git(repo, "branch", "--list")
    assert not os.path.exists(tree_c.path) and tree_c.branch not in git(repo, "branch", "--list")
    assert f"removed worktree {tree_c.path} and branch {tree_c.branch}" in out.stdout
    out = cli("worktree", "prune", "--ended", "--force")
    assert out.returncode == 0, out.stderr
    assert not os.path.exists(tree_d.path) and "runstop/" not in git(repo, "branch", "--list")
    assert "no worktrees of ended runs left" in cli("worktree", "prune", "--ended").stdout
    assert cli("worktree", "prune").returncode == 2


def test_prune_refuses_a_live_runs_worktree(repo: Path) -> None:
    live = runstop_nb.start(["sleep", "1000"], name="busy", cwd=repo, worktree=True)
    out = cli("worktree", "prune", "busy")
    assert out.returncode == 1 and "stop it first" in out.stderr
    assert live.worktree is not None and os.path.isdir(live.worktree.path)


# -- issue 12: the agent summary ---------------------------------------------------------

CLAUDE_EVENTS = [
    {"type": "system", "subtype": "init", "session_id": "sess-42", "model": "claude-test"},
    {"type": "assistant", "session_id": "sess-42", "message": {
        "id": "m1", "model": "claude-test", "usage": {"input_tokens": 10, "output_tokens": 5},
        "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}}]}},
    {"type": "user", "session_id": "sess-42", "message": {"content": [
        {"type": "tool_result", "tool_use_id": "t1", "content": "a.txt"}]}},
    {"type": "assistant", "session_id": "sess-42", "message": {
        "id": "m2", "model": "claude-test", "usage": {"input_tokens": 20, "output_tokens": 7},
        "content": [{"type": "text", "text": "all done"}]}},
    {"type": "result", "subtype": "success", "session_id": "sess-42", "result": "all done", "num_turns": 2,
     "total_cost_usd": 0.0125, "usage": {"input_tokens": 30, "output_tokens": 12, "cache_read_input_tokens": 4}},
]


def test_show_and_ls_json_give_the_agent_summary(tmp_path: Path) -> None:
    stream = tmp_path / "claude.jsonl"
    stream.write_text("".join(json.dumps(e) + "\n" for e in CLAUDE_EVENTS))
    run = runstop_nb.start(["cat", str(stream)], name="claude-ish", format="claude")
    assert run.wait(30) == "completed"
    summary = run.agent
    assert summary is not None and summary.session_id == "sess-42" and summary.usage.cost_usd == 0.0125
    fields = dict(line.split(None, 1) for line in cli("show", "claude-ish").stdout.split("\n\n")[0].splitlines())
    assert fields["agent"] == "claude" and fields["session"] == "sess-42" and fields["model"] == "claude-test"
    assert fields["turns"] == f"{summary.turns} turns, {summary.tool_calls} tool calls" and summary.tool_calls == 1
    u = summary.usage
    assert fields["tokens"] == f"{u.input_tokens} in ({u.cached_input_tokens} cached), {u.output_tokens} out"
    assert fields["cost"] == "$0.0125"
    row = json.loads(cli("ls", "--json").stdout)[0]
    assert row["agent"]["session_id"] == "sess-42" and row["agent"]["usage"]["cost_usd"] == 0.0125
    assert row["agent"]["tool_calls"] == 1
    plain_fields = cli("show", finished([PY, "-c", "pass"], "plain").id).stdout
    assert "session" not in plain_fields and "agent " not in plain_fields


def test_stop_grace_reaches_a_live_kernel() -> None:
    """Issue 14 item 2: ``--grace`` travels with the request to the run's kernel."""
    stubborn = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('up', flush=True)\ntime.sleep(1000)"
    run = runstop_nb.start([sys.executable, "-c", stubborn], name="stubborn-cli", grace=3)
    wait_for(lambda: "up" in run.output(), 10, "the TERM-ignorer")
    out = cli("stop", run.id, "--grace", "0.3")
    assert out.returncode == 0, out.stdout + out.stderr
    result = run.last_stop
    assert result is not None and result.escalated, result
    assert result.elapsed_s < 2.0, f"took {result.elapsed_s:.2f} s: the run's own 3 s grace was used, not --grace 0.3"
    assert not cookie_alive(run.spec.cookie)
