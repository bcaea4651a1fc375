"""A stand-in kernel: a plain Python process that starts runs, then waits to be killed.

To runstop_nb it is exactly a kernel (the runs' owner, the warden's parent), and it
starts in a fraction of a real kernel's time, so kernel-death trials can be repeated.
Real kernels (jupyter_client) are used by test_kernel.py and test_kernel_matrix.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runstop_nb._proc.cgroup import Group

from .helpers import cookie_alive, helpers_of, kill_pids

_PROGRAM = r"""
import json, sys, time
import runstop_nb
specs = json.loads(sys.argv[1])
runs = [runstop_nb.start(s["cmd"], grace=s.get("grace", 0.3), shell=s.get("shell", False)) for s in specs]
agent = lambda r: r._agent
print(json.dumps([dict(id=r.id, cookie=r.spec.cookie, pid=r.pid, cgroup=r.cgroup, containment=r.containment,
                       guard=agent(r).guard.pid, warden=agent(r)._link.pid) for r in runs]), flush=True)
time.sleep(100000)
"""


@dataclass(frozen=True)
class StandinRun:
    id: str
    cookie: str
    pid: int
    cgroup: str | None
    containment: str
    guard: int
    warden: int


@dataclass
class Standin:
    proc: subprocess.Popen[str]
    runs: list[StandinRun]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


@contextmanager
def standin_kernel(specs: list[dict[str, Any]], home: Path, env: dict[str, str] | None = None) -> Iterator[Standin]:
    """Start a stand-in kernel running ``specs`` (``cmd``, ``grace``, ``shell``); kill all it left, by pid."""
    proc = subprocess.Popen([sys.executable, "-c", _PROGRAM, json.dumps(specs)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "RUNSTOP_NB_HOME": str(home), **(env or {})}, start_new_session=True)
    runs: list[StandinRun] = []
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        runs = [StandinRun(**r) for r in json.loads(line)]
        yield Standin(proc, runs)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        # Let its warden and guards finish ending the trees (killing them mid-way would orphan
        # what they were ending); then kill whatever is left: by cgroup, cookie and pid.
        deadline = time.monotonic() + 8
        while helpers_of(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        for path in {os.path.dirname(r.cgroup) for r in runs if r.cgroup}:
            Group(path).kill()
        for run in runs:
            kill_pids(cookie_alive(run.cookie))
        kill_pids(helpers_of(proc.pid))  # its warden and guards, found by their owner marker
