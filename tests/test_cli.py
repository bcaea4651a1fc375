"""The ``runstop`` console script, run as a real process against a real history."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import runstop_nb

from .helpers import AGENTS, PY, alive, cookie_alive, kill_pids
from .orphans import make_orphan, other_process_run

RUNSTOP = str(Path(sys.executable).parent / "runstop")
COUNTER = str(AGENTS / "counter.py")


def cli(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``runstop ARGS``; its output decoded as is (text mode would turn ``\\r`` into newlines)."""
    out = subprocess.run([RUNSTOP, *args], capture_output=True, timeout=timeout, cwd=cwd)
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
    out = cli("--home", str(tmp_path / "nothing-here"), "ls")
    assert out.returncode == 0 and "no runs recorded" in out.stderr
    assert not (tmp_path / "nothing-here").exists(), "the CLI must never create a runs home"
    out = cli("--home", str(tmp_path / "nothing-here"), "show", "abcdef")
    assert out.returncode == 1 and "no run 'abcdef'" in out.stderr


def test_show_prints_metadata_and_the_tail() -> None:
    run = finished([PY, COUNTER, "--lines", "30", "--interval", "0.005"], "counted")
    out = cli("show", "counted", "-n", "3")
    assert out.returncode == 0, out.stderr
    fields = dict(line.split(None, 1) for line in out.stdout.split("\n\n")[0].splitlines() if " " in line)
    assert fields["id"] == run.id and fields["status"] == "completed (exit 0)"
    assert fields["pid"] == str(run.pid) and fields["logs"] == str(run.log_dir)
    assert fields["output"].startswith(f"{run.lines} lines")
    tail = out.stdout.split("--- last 3 lines ---\n")[1]
    assert tail == run.tail(3) and "done" in tail


def test_logs_prints_the_output_and_follow_ends_with_the_run() -> None:
    done = finished([PY, COUNTER, "--lines", "12", "--interval", "0.005", "--progress-every", "5"], "logged")
    out = cli("logs", done.id)
    assert out.returncode == 0 and out.stdout == done.output()
    assert cli("logs", done.id, "--stream", "stderr").stdout == done.output("stderr")
    run = runstop_nb.start([PY, COUNTER, "--lines", "40", "--interval", "0.05"], name="followed")
    follow = subprocess.Popen([RUNSTOP, "logs", "-f", run.id], stdout=subprocess.PIPE)
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
