"""Run views across page reloads, reopened tabs and lost kernels; the compact dashboard.

What a data scientist does to a notebook with live agents: reload the page (again and
again), close its tab and open it again, restart the kernel from the menu or have it
restarted behind the page's back (the REST API), and look at ten runs at once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import partial

import pytest
from playwright.sync_api import expect

from .conftest import ARTIFACTS, ROOT
from .page import KERNEL_IDLE, LOAD, NotebookPage

pytestmark = pytest.mark.e2e

Notebook = Callable[[list[str]], NotebookPage]
Measure = Callable[[str, object], None]
NAMES = ("alpha", "beta", "gamma")
THREE = """%%agent_run --cols 3
alpha: python agents/counter.py --interval 0.3
beta: python agents/counter.py --interval 0.3
gamma: python agents/spawner.py --children 1
"""
MODELS = "len(__import__('ipywidgets').widgets.widget._instances)"
DARK_SHOT = ROOT / "docs" / "grid-dark.png"
DASH_SHOT = ROOT / "docs" / "dashboard.png"
# Anything ipywidgets prints when a view cannot be shown, or draws for a broken link.
BROKEN = """() => {
  const text = document.body.innerText;
  const icons = [...document.querySelectorAll('.jupyter-widgets-disconnected')].filter((el) => {
    const before = getComputedStyle(el, '::before');
    return before.content !== 'none' && before.content !== '' && before.display !== 'none';
  });
  return {notFound: text.includes('model not found') || text.includes('Error displaying widget'),
          icons: icons.length};
}"""


def start_three(nb: NotebookPage) -> None:
    nb.run_all()
    expect(nb.widgets).to_have_count(3)
    for name in NAMES:
        nb.poll(partial(lambda n: len(nb.output_lines(nb.widget(n))) >= 1, name), 30, f"output in {name}")


def views_back(nb: NotebookPage, timeout: float) -> None:
    """Every run view shows its live run again, with its tail, and nothing is broken."""
    nb.page.wait_for_function(KERNEL_IDLE, timeout=90_000, polling=100)
    expect(nb.widgets).to_have_count(3, timeout=timeout * 1000)
    for name in NAMES:
        w = nb.widget(name)
        expect(w.locator(".runstop-status")).to_have_text("running", timeout=timeout * 1000)
        nb.poll(partial(lambda v: len(nb.output_lines(v)) >= 1, w), timeout, f"{name}'s tail after the reload")
    broken = nb.page.evaluate(BROKEN)
    assert broken == {"notFound": False, "icons": 0}, broken


def test_reloading_ten_times_brings_every_view_back_live(notebook: Notebook, measure: Measure) -> None:
    nb = notebook([LOAD, THREE])
    start_three(nb)
    assert nb.probe is not None
    models = nb.probe.eval(MODELS)
    nb.execute("docmanager:save")  # the outputs (views) are in the file: what a reload shows
    times = []
    for _ in range(10):
        t0 = time.monotonic()
        nb.page.reload()
        views_back(nb, 30)
        times.append(round(time.monotonic() - t0, 2))
        clock = nb.text(nb.widget("alpha"), ".runstop-elapsed")
        nb.poll(partial(lambda c: nb.text(nb.widget("alpha"), ".runstop-elapsed") != c, clock), 5,
                "the clock to tick after the reload")
    measure("reload_to_views_s", times)
    assert nb.probe.eval(MODELS) == models, "reloads opened (or lost) models in the kernel"
    assert set(nb.live_runs()) == set(NAMES)

    # Close the tab (leave the page) and open the notebook again: the same views, live.
    nb.page.goto("about:blank")
    nb.page.goto(nb.server.notebook_url(nb.name).replace("?reset", ""))
    views_back(nb, 60)


def gone_everywhere(nb: NotebookPage, timeout: float) -> None:
    for name in NAMES:
        w = nb.widget(name)
        expect(w.locator(".runstop-gone")).to_have_text("kernel gone: this run was stopped with its kernel",
                                                        timeout=timeout * 1000)
        expect(w.locator(".runstop-stop")).to_be_disabled()
    broken = nb.page.evaluate(BROKEN)
    assert broken["icons"] == 0, "a broken-link icon is drawn"


def test_a_rest_api_restart_shows_in_every_view(notebook: Notebook, measure: Measure) -> None:
    nb = notebook([LOAD, THREE])
    start_three(nb)
    cells = nb.page.locator(".runstop-cell")
    before = [cells.nth(i).bounding_box() for i in range(3)]
    kernel_id = nb.server.kernel_id(nb.name)
    t0 = time.monotonic()
    nb.server.api("POST", f"/api/kernels/{kernel_id}/restart")
    gone_everywhere(nb, 5 - (time.monotonic() - t0))
    measure("rest_restart_to_gone_s", round(time.monotonic() - t0, 2))
    after = [cells.nth(i).bounding_box() for i in range(3)]
    assert [b["x"] if b else None for b in after] == [b["x"] if b else None for b in before], "the grid's layout moved"
    expect(nb.page.locator(".runstop-grid .runstop-stop-all")).to_be_disabled()


DASHBOARD = """import runstop_nb
runs = [runstop_nb.start(['python', 'agents/counter.py', '--interval', '0.5'], name=f'agent-{i}') for i in range(9)]
runs.append(runstop_nb.start(['sh', '-c', 'echo done'], name='quick'))
runs[-1].wait(10)
"""


def test_the_dashboard_of_ten_runs_fits_one_screen(notebook: Notebook, frontend: str) -> None:
    nb = notebook([LOAD, DASHBOARD, "runstop_nb.dashboard()"])
    nb.run_all()
    board = nb.page.locator(".runstop-board")
    expect(board.locator("tr.runstop-row")).to_have_count(10)
    box = board.bounding_box()
    assert box is not None and box["height"] <= nb.page.viewport_size["height"] / 2, box  # type: ignore[index]
    expect(board.locator("tr.runstop-row[data-status='completed']")).to_have_count(1)
    quick = board.locator("tr.runstop-row", has=nb.page.locator(".runstop-open", has_text="quick"))
    expect(quick.locator(".runstop-exit")).to_have_text("exit 0")
    # The filter, one row's Stop, then "Stop all" with its confirmation.
    board.locator(".runstop-filter").select_option("completed")
    expect(board.locator("tr.runstop-row")).to_have_count(1)
    board.locator(".runstop-filter").select_option("all")
    first = board.locator("tr.runstop-row", has=nb.page.locator(".runstop-open", has_text="agent-0"))
    first.locator(".runstop-stop").click()
    expect(first.locator(".runstop-status")).to_have_text("cancelled", timeout=15_000)
    # A name opens that run's view below the table.
    first.locator(".runstop-open").click()
    expect(board.locator(".runstop-detail .runstop-run")).to_have_count(1)
    expect(board.locator(".runstop-detail .runstop-stopinfo")).to_contain_text("stopped")
    if frontend == "lab":
        first.locator(".runstop-open").click()
        expect(board.locator(".runstop-detail .runstop-run")).to_have_count(0)
        shot = ARTIFACTS / "dashboard-lab.png"
        ARTIFACTS.mkdir(exist_ok=True)
        board.screenshot(path=shot)
        publish(shot, DASH_SHOT)
    board.locator(".runstop-stop-all").click()
    expect(board.locator(".runstop-confirm")).to_contain_text("Stop 8 live runs?")
    board.locator(".runstop-confirm-yes").click()
    expect(board.locator("tr.runstop-row[data-status='cancelled']")).to_have_count(9, timeout=20_000)
    assert nb.live_runs() == {}


def test_dark_theme_screenshot(notebook: Notebook, frontend: str) -> None:
    if frontend != "lab":
        pytest.skip("the screenshot comes from JupyterLab")
    nb = notebook([LOAD, THREE])
    nb.page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})")
    nb.page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'", timeout=30_000)
    start_three(nb)
    nb.page.evaluate("() => { window.jupyterapp.shell.collapseLeft();"
                     " window.jupyterapp.shell.currentWidget.content.activeCellIndex = 0; }")
    nb.poll(lambda: all(len(nb.output_lines(nb.widget(n))) >= 8 for n in NAMES), 30, "output in every view")
    badge = nb.widget("alpha").locator(".runstop-status")
    colour = badge.evaluate("(el) => getComputedStyle(el).color")
    background = nb.widget("alpha").evaluate("(el) => getComputedStyle(el).backgroundColor")
    assert colour != background
    border = nb.widget("alpha").evaluate("(el) => getComputedStyle(el).borderTopColor")
    assert border not in ("rgb(255, 255, 255)", "rgb(208, 215, 222)"), "a light border on the dark theme"
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "grid-dark-lab.png"
    nb.page.locator(".jp-CodeCell").filter(has=nb.page.locator(".runstop-grid")).screenshot(path=shot)
    publish(shot, DARK_SHOT)
    nb.page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Light'})")


def publish(shot: os.PathLike[str], target: os.PathLike[str]) -> None:
    """Copy a screenshot into docs/ when it is missing or RUNSTOP_UPDATE_SCREENSHOT=1."""
    from pathlib import Path

    dest = Path(target)
    if not dest.exists() or os.environ.get("RUNSTOP_UPDATE_SCREENSHOT") == "1":
        dest.parent.mkdir(exist_ok=True)
        dest.write_bytes(Path(shot).read_bytes())
