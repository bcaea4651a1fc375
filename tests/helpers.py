"""Test helpers shared by every suite: polling, pid-exact cleanup, finding a run's processes, canaries.

Fixtures live in conftest.py; everything a test imports lives here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import psutil
import pytest

import runstop_nb
from runstop_nb._proc import procfs

HERE = Path(__file__).parent
AGENTS = HERE.parent / "notebooks" / "agents"
PY = sys.executable
FORKCHAIN = str(HERE / "agents" / "forkchain.py")
TRIALS = int(os.environ.get("RUNSTOP_RACE_TRIALS", "20"))  # repeats of each race trial


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll until predicate() is truthy; fail the test with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_pids(pids: Iterable[int]) -> None:
    for pid in pids:
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            pass


def pids_with(*markers: bytes, unless: Iterable[bytes] = ()) -> list[int]:
    """Live pids (not zombies, not this process) whose environment holds any of ``markers``
    and none of ``unless``: how tests find what a kernel or a run left behind."""
    skip = tuple(unless)
    found = set()
    for marker in markers:
        for pid, env in procfs.scan(marker, skip={os.getpid()}):
            if not any(u in env for u in skip) and alive(pid):
                found.add(pid)
    return sorted(found)


def cookie_alive(cookie: str) -> list[int]:
    """Live (non-zombie) pids carrying this exact cookie."""
    return [p for p in procfs.cookie_pids(cookie, skip={os.getpid()}) if alive(p)]


def helpers_of(kernel_pid: int) -> list[int]:
    """Live warden and guard processes of the kernel ``kernel_pid`` (they carry its owner marker)."""
    return [pid for pid in pids_with(b"RUNSTOP_NB_ROLE=warden")
            if (procfs.markers(procfs.environ(pid) or b"").get(procfs.OWNER_VAR, "").split(":")[0] == str(kernel_pid))]


class Canaries:
    """Processes that must survive everything: same command line, another cookie."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], cookie: str | None = None) -> int:
        env = dict(os.environ, RUNSTOP_NB_COOKIE=cookie or "canary-" + uuid.uuid4().hex)
        proc = subprocess.Popen(argv, env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc.pid

    def assert_alive(self) -> None:
        dead = [p.pid for p in self.procs if p.poll() is not None]
        assert not dead, f"canaries were hit: {dead}"

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait()


def name_of(p: psutil.Process) -> str:
    """A process's name, or "" if it is gone meanwhile (a listed child may exit before it is asked)."""
    try:
        return p.name()
    except psutil.Error:
        return ""


def created_at(procs: list[psutil.Process]) -> dict[int, float]:
    """pid -> start time of those of ``procs`` still alive when asked."""
    out = {}
    for p in procs:
        try:
            out[p.pid] = p.create_time()
        except psutil.Error:
            pass
    return out


def beats(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def assert_chain_dead(run: runstop_nb.Run, beat: Path) -> None:
    """From outside: the heartbeat stops growing, and nothing carries the cookie."""
    size = beats(beat)
    time.sleep(0.05)  # a live generation writes a beat every ~1 ms
    assert beats(beat) == size, "a generation of the chain is still alive (heartbeat grew)"
    # stop() had returned before the heartbeat check, so this cookie scan cannot race a live chain
    assert cookie_alive(run.spec.cookie) == []
