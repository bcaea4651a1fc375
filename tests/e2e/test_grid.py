"""Scenario 1: a %%agent_run cell shows a live grid of run widgets."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
from playwright.sync_api import expect

from .conftest import ARTIFACTS, ROOT
from .page import LOAD, NotebookPage

pytestmark = pytest.mark.e2e
Notebook = Callable[[list[str]], NotebookPage]
Measure = Callable[[str, object], None]

NAMES = ("planner", "coder", "reviewer")
GRID = """%%agent_run --cols 3
planner: python agents/counter.py --interval 0.25
coder: python agents/counter.py --interval 0.2 --progress-every 7
reviewer: python agents/counter.py --interval 0.3
"""
DOCS_SHOT = ROOT / "docs" / "grid.png"


def test_grid_shows_three_streaming_runs(notebook: Notebook, frontend: str) -> None:
    nb = notebook([LOAD, GRID])
    nb.run_all()
    expect(nb.widgets).to_have_count(3)
    live = nb.live_runs()
    assert set(live) == set(NAMES)
    for name in NAMES:
        w = nb.widget(name)
        expect(w.locator(".runstop-status")).to_have_text("running")
        expect(w.locator(".runstop-pid")).to_have_text(f"pid {live[name].pid}")
        nb.poll(partial(lambda v: any("working on step" in line for line in nb.output_lines(v)), w), 20,
                f"output lines in {name}")
    coder = nb.widget("coder")
    first = nb.text(coder, ".runstop-elapsed")
    nb.poll(lambda: nb.text(coder, ".runstop-elapsed") != first, 10, "the elapsed clock to tick")
    assert nb.text(coder, ".runstop-elapsed") > first  # "00:03" > "00:02": it counts up

    if frontend == "lab":
        # The README picture: the cell (command and grid), a dozen lines in each widget.
        nb.page.evaluate("() => { window.jupyterapp.shell.collapseLeft();"
                         " window.jupyterapp.shell.currentWidget.content.activeCellIndex = 0; }")
        nb.poll(lambda: all(len(nb.output_lines(nb.widget(n))) >= 12 for n in NAMES), 30,
                "a dozen lines in every widget")
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "grid-lab.png"
        nb.page.locator(".jp-CodeCell").filter(has=nb.page.locator(".runstop-grid")).screenshot(path=shot)
        publish_screenshot(shot)


def publish_screenshot(shot: Path) -> None:
    """Copy the grid screenshot to docs/grid.png, the picture the README shows.

    Only when docs/grid.png is missing or RUNSTOP_UPDATE_SCREENSHOT=1: the picture has
    live pids and clocks in it, so rewriting a tracked file on every run would leave every
    CI checkout dirty.
    """
    if not DOCS_SHOT.exists() or os.environ.get("RUNSTOP_UPDATE_SCREENSHOT") == "1":
        DOCS_SHOT.parent.mkdir(exist_ok=True)
        DOCS_SHOT.write_bytes(shot.read_bytes())
