"""Shared fixtures: a private runs home, pid-exact cleanup, and canary processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import psutil
import pytest

import runstop_nb
from runstop_nb._ladder import cookie_pids

HERE = Path(__file__).parent
AGENTS = HERE.parent / "notebooks" / "agents"


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


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            pass


def pids_with(*markers: bytes, unless: Iterable[bytes] = ()) -> list[int]:
    """Live pids (not zombies, not this process) whose environment holds any of ``markers``
    and none of ``unless``: how tests find what a kernel or a run left behind."""
    skip = tuple(unless)
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if any(m in env for m in markers) and not any(u in env for u in skip) and alive(int(name)):
            found.append(int(name))
    return found


def cookie_alive(cookie: str) -> list[int]:
    """Live (non-zombie) pids carrying this exact cookie."""
    return [p for p in cookie_pids(cookie, protect={os.getpid()}) if alive(p)]


@pytest.fixture(autouse=True)
def runs_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own runs home, and leaves no run of its own alive."""
    home = tmp_path / "home"
    monkeypatch.setenv("RUNSTOP_NB_HOME", str(home))
    before = {r.id for r in runstop_nb.runs()}
    try:
        yield home
    finally:
        mine = [r for r in runstop_nb.runs() if r.id not in before]
        for run in mine:
            if not run.done:
                run.stop(grace=0.5)
        for run in mine:  # belt and braces: by exact cookie, by pid
            kill_pids(cookie_alive(run.spec.cookie))


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


@pytest.fixture
def canaries() -> Iterator[Canaries]:
    c = Canaries()
    try:
        yield c
    finally:
        c.close()


PY = sys.executable
