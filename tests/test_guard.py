"""The guard and the warden with a stand-in kernel we can kill: kernel death is noticed by the
kernel's pidfd (a fact), also when a forked copy of the kernel holds every socket open."""

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

from .helpers import alive, cookie_alive, helpers_of, kill_pids, wait_for

FAKE_KERNEL = r"""
import json, os, sys, time
import runstop_nb
run = runstop_nb.start(["bash", "-c", "setsid sleep 1000 & (trap '' TERM; sleep 1000) & sleep 1000"], grace=1)
if sys.argv[1] == "fork":
    if os.fork() == 0:          # a forked copy of the kernel keeps the lifeline and control sockets open
        time.sleep(1000)
print(json.dumps({"cookie": run.spec.cookie, "guard": run._agent.guard.pid}), flush=True)
time.sleep(1000)
"""


def start_fake_kernel(tmp_path: Path, mode: str) -> tuple[subprocess.Popen[str], str, int]:
    proc = subprocess.Popen([sys.executable, "-c", FAKE_KERNEL, mode], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, RUNSTOP_NB_HOME=str(tmp_path / "h")), start_new_session=True)
    assert proc.stdout is not None
    info = json.loads(proc.stdout.readline())
    proc.stdout.close()
    return proc, info["cookie"], info["guard"]


@pytest.mark.parametrize("mode", ["plain", "fork"])
def test_tree_dies_within_5s_of_kernel_sigkill(tmp_path: Path, mode: str) -> None:
    """plain: the sockets reach EOF too. fork: a forked copy holds them open, so only the
    kernel's pidfd (readable when the kernel process exits) can notice."""
    proc, cookie, _guard = start_fake_kernel(tmp_path, mode)
    try:
        wait_for(lambda: len(cookie_alive(cookie)) >= 4, 10, "bash + 3 sleeps")
        t0 = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        wait_for(lambda: cookie_alive(cookie) == [] and not helpers_of(proc.pid), 5,
                 "the whole tree, its guard and the warden, to end")
        assert time.monotonic() - t0 < 5
    finally:
        kill_pids(cookie_alive(cookie))
        kill_pids(helpers_of(proc.pid))
        if _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except OSError:
        return False


def test_guard_exits_at_once_after_the_verdict() -> None:
    run = runstop_nb.start(["true"])
    assert run.wait(10) == "completed"
    guard = run._agent.guard  # type: ignore[union-attr]
    assert guard is not None and not guard.alive()


def test_verdict_file_is_left_in_the_log_folder() -> None:
    run = runstop_nb.start(["sh", "-c", "exit 5"])
    assert run.wait(10) == "failed"
    verdict = json.loads((run.log_dir / "verdict.json").read_text())
    assert verdict["dead"] and verdict["cause"] == "exit" and verdict["returncode"] == 5
    assert alive(os.getpid())
