"""The guard alone, with a stand-in 'kernel' process we can kill: both death triggers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import cookie_alive, kill_pids, wait_for

FAKE_KERNEL = r"""
import json, os, sys, time
import runstop_nb
run = runstop_nb.start(["bash", "-c", "setsid sleep 1000 & (trap '' TERM; sleep 1000) & sleep 1000"], grace=1)
if sys.argv[1] == "fork":
    if os.fork() == 0:          # a forked copy of the kernel keeps the lifeline socket open
        time.sleep(1000)
print(json.dumps({"cookie": run.spec.cookie, "guard": run._agent.guard.pid}), flush=True)
time.sleep(1000)
"""


def start_fake_kernel(tmp_path: Path, mode: str) -> tuple[subprocess.Popen[str], str, int]:
    proc = subprocess.Popen([sys.executable, "-c", FAKE_KERNEL, mode], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, RUNSTOP_NB_HOME=str(tmp_path / "h")), start_new_session=True)
    assert proc.stdout is not None
    info = json.loads(proc.stdout.readline())
    return proc, info["cookie"], info["guard"]


@pytest.mark.parametrize("mode", ["plain", "fork"])
def test_tree_dies_within_5s_of_kernel_sigkill(tmp_path: Path, mode: str) -> None:
    """plain: the lifeline reaches EOF. fork: a forked copy holds the lifeline open, so only
    the parent-death signal can notice."""
    proc, cookie, _guard = start_fake_kernel(tmp_path, mode)
    try:
        wait_for(lambda: len(cookie_alive(cookie)) >= 5, 10, "guard + bash + 3 sleeps")
        t0 = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        wait_for(lambda: cookie_alive(cookie) == [], 5, "the whole tree, guard included, to die")
        assert time.monotonic() - t0 < 5
    finally:
        kill_pids(cookie_alive(cookie))
        os.killpg(proc.pid, signal.SIGKILL) if _group_alive(proc.pid) else None
        proc.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except OSError:
        return False


def test_guard_exits_at_once_after_release(tmp_path: Path) -> None:
    import runstop_nb

    run = runstop_nb.start(["true"])
    assert run.wait(10) == "completed"
    guard = run._agent.guard  # type: ignore[union-attr]
    assert guard is not None
    assert not guard.is_running() or guard.status() == "zombie"
