"""Scenario 4: a flooding agent leaves the page responsive, the widget bounded, the log whole."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
from playwright.sync_api import expect

from .page import LOAD, NotebookPage

pytestmark = pytest.mark.e2e
Notebook = Callable[[list[str]], NotebookPage]
Measure = Callable[[str, object], None]

# At least 200,000 lines (the floor). Two million (122 MB) keep flood.py writing
# for 1-3 s here, so the Stop click below usually lands while the flood is pouring in;
# the test records whether it did (the log's last write against the click).
LINES = 2_000_000
FLOOD = f"""%%agent_run --cols 2
flood: python agents/flood.py --lines {LINES}
ticker: python agents/counter.py --interval 0.2
"""
NUMBERED = re.compile(r"^(\d{9}) x+$")
TAIL_MAX = 200 + 1  # the widget's tail window plus its "… earlier output not shown" marker


def test_flood_keeps_page_responsive_tail_bounded_and_log_complete(notebook: Notebook, measure: Measure) -> None:
    nb = notebook([LOAD, FLOOD])
    nb.run_all()
    flood, ticker = nb.widget("flood"), nb.widget("ticker")
    expect(nb.widgets).to_have_count(2)
    most = 0  # the most lines the flood's output area ever showed while sampled

    def sample() -> list[str]:
        nonlocal most
        shown = nb.output_lines(flood)
        most = max(most, len(shown))
        return shown

    # Responsive: a click on the other widget's Stop shows its effect within 2 s. Clicked
    # at once: the flood started with the cell, before its widgets were displayed.
    stop = ticker.locator(".runstop-stop")
    expect(stop).to_be_enabled()
    clicked, clicked_at = time.monotonic(), time.time()
    stop.click()
    expect(ticker.locator(".runstop-status")).to_have_text("cancelled", timeout=2_000)
    measure("stop_click_to_cancelled_s", round(time.monotonic() - clicked, 3))
    log = nb.run("flood").log_dir / "stdout.log"
    measure("flood_writing_after_click_s", round(log.stat().st_mtime - clicked_at, 3))

    # Bounded, while it floods and once it ends.
    nb.poll(lambda: any(NUMBERED.match(line) for line in sample()), 30, "flood lines")
    while nb.text(flood, ".runstop-status") == "running":
        sample()
        nb.page.wait_for_timeout(100)
    expect(flood.locator(".runstop-status")).to_have_text("completed", timeout=60_000)
    shown = nb.output_lines(flood)
    measure("flood_tail_lines_max_live", most)
    measure("flood_tail_lines_final", len(shown))
    assert len(shown) <= TAIL_MAX, f"{len(shown)} lines in the output area"
    assert most <= TAIL_MAX, f"{most} lines in the output area while flooding"
    assert shown[-1] == f"{LINES - 1:09d} " + "x" * 49, shown[-1]
    assert "earlier output not shown" in shown[0], shown[0]

    # Complete on disk: every numbered line, in order, no gap.
    numbers = [int(line[:9]) for line in log.read_bytes().decode().splitlines()]
    assert len(numbers) == LINES
    assert numbers == list(range(LINES)), "the log has gaps or reordering"
