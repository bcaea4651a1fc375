"""Runs whose kernel is gone, made for real: the history and janitor tests share them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from .helpers import alive, cookie_alive, kill_pids, wait_for
from .kernel import kernel


@dataclass(frozen=True)
class Orphan:
    id: str
    name: str
    cookie: str
    pid: int  # the agent root, still running
    kernel: int  # dead
    guard: int  # dead


def make_orphan(cwd: Path, cmd: list[str] | None = None, name: str = "orphan",
                env: dict[str, str] | None = None) -> Orphan:
    """Start a run in a real kernel, then kill the kernel, the run's guard *and* the warden.

    The guard and the warden must die before or with their kernel, or they stop the tree
    themselves: so both are SIGSTOPped first (neither can act on the kernel's death), the
    kernel is SIGKILLed, then both are SIGKILLed. The agent lives on, re-parented to init:
    an orphan (and in cgroup mode, still in its run's cgroup).
    """
    cmd = cmd or ["sleep", "1000"]
    with kernel(cwd, env) as k:
        k.ok(f"import runstop_nb\nrun = runstop_nb.start({cmd!r}, name={name!r})")
        info = k.eval("dict(id=run.id, cookie=run.spec.cookie, pid=run.pid, guard=run._agent.guard.pid, "
                      "warden=run._agent._link.pid)")
        helpers = [psutil.Process(info["warden"]), psutil.Process(info["guard"])]
        try:
            for proc in helpers:
                proc.send_signal(signal.SIGSTOP)
            wait_for(lambda: all(p.status() == psutil.STATUS_STOPPED for p in helpers), 10, "the helpers to stop")
            psutil.Process(k.pid).kill()
            wait_for(lambda: not alive(k.pid), 10, "the kernel to die")
            for proc in helpers:
                proc.kill()
            wait_for(lambda: not any(alive(p.pid) for p in helpers), 10, "the guard and warden to die")
        except BaseException:
            kill_pids([*(p.pid for p in helpers), *cookie_alive(info["cookie"])])
            raise
        kernel_pid = k.pid
    assert alive(info["pid"]), "the agent died with its kernel: no orphan was made"
    return Orphan(info["id"], name, info["cookie"], info["pid"], kernel_pid, info["guard"])


# A plain Python process standing in for a kernel: it starts one run, prints what the
# test needs as one JSON line, and waits for stdin to close.
_KERNEL = textwrap.dedent("""
    import json, sys, runstop_nb
    run = runstop_nb.start(json.loads(sys.argv[1]), name=sys.argv[2], env=json.loads(sys.argv[3]))
    if sys.argv[4] == "wait":
        run.wait(60)
        runstop_nb._recorder.flush()  # the end is written a moment after wait() returns
    print(json.dumps(dict(id=run.id, cookie=run.spec.cookie, pid=run.pid)), flush=True)
    sys.stdin.read()
    runstop_nb.stop_all(0.5)
""")


@dataclass(frozen=True)
class Owner:
    proc: subprocess.Popen[str]
    id: str
    cookie: str
    pid: int | None


@contextmanager
def other_process_run(cmd: list[str], name: str = "elsewhere", env: dict[str, str | None] | None = None,
                      wait: bool = False) -> Iterator[Owner]:
    """A run owned by another live process (a stand-in kernel); its tree is killed afterwards."""
    proc = subprocess.Popen([sys.executable, "-c", _KERNEL, json.dumps(cmd), name, json.dumps(env or {}),
                             "wait" if wait else "live"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    cookie = None
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        cookie = info["cookie"]
        yield Owner(proc, info["id"], cookie, info["pid"])
    finally:
        try:
            if proc.stdin is not None:
                proc.stdin.close()
        except OSError:
            pass
        try:
            proc.send_signal(signal.SIGCONT)  # a test may have stopped it
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if cookie:
            kill_pids(cookie_alive(cookie))
