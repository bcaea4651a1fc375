"""Fixtures: a private runs home for every test (that leaves no run of its own alive), and canaries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import runstop_nb

from .helpers import Canaries, cookie_alive, kill_pids


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


@pytest.fixture
def canaries() -> Iterator[Canaries]:
    c = Canaries()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(params=["cgroup", "guard"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test runs once per containment mode (``RUNSTOP_NB_CONTAINMENT``)."""
    from runstop_nb._local import warden_link

    if request.param == "cgroup" and warden_link().group is None:
        pytest.skip(f"no cgroup containment here: {warden_link().group_reason}")
    monkeypatch.setenv("RUNSTOP_NB_CONTAINMENT", request.param)
    return str(request.param)
