"""Scenarios 2, 3 and 6: Stop buttons and a kernel restart end whole process trees."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from functools import partial

import pytest
from playwright.sync_api import expect

from .page import LOAD, NotebookPage
from .probe import tree_by_cookie
from .test_views import BROKEN

pytestmark = pytest.mark.e2e
Notebook = Callable[[list[str]], NotebookPage]
Measure = Callable[[str, object], None]

THREE = """%%agent_run --cols 3
planner: python agents/counter.py --interval 0.2
coder: python agents/counter.py --interval 0.2
reviewer: python agents/counter.py --interval 0.2
"""
STUBBORN = """%%agent_run --grace 1
stubborn: python agents/stubborn.py
"""
# A tree with setsid'd and double-forked descendants, a TERM-ignoring agent, a plain one.
MIXED = """%%agent_run --grace 1 --cols 3
tree: python agents/spawner.py
stubborn: python agents/stubborn.py
counter: python agents/counter.py --interval 0.2
"""
STEP = re.compile(r"working on step (\d+)")


def last_step(nb: NotebookPage, name: str) -> int:
    steps = [int(m.group(1)) for line in nb.output_lines(nb.widget(name)) if (m := STEP.search(line))]
    return max(steps, default=0)


def wait_streaming(nb: NotebookPage, names: list[str], marker: str) -> None:
    for name in names:
        nb.poll(partial(lambda n: any(marker in line for line in nb.output_lines(nb.widget(n))), name), 30,
                f"output in {name}")


def test_stop_button_ends_one_tree_and_others_keep_streaming(notebook: Notebook) -> None:
    nb = notebook([LOAD, THREE])
    nb.run_all()
    expect(nb.widgets).to_have_count(3)
    wait_streaming(nb, ["planner", "coder", "reviewer"], "working on step")
    live = nb.live_runs()
    coder = live["coder"]
    tree = tree_by_cookie(coder.cookie)
    assert coder.pid in tree, f"the agent pid {coder.pid} is not among its cookie's processes {tree}"

    widget = nb.widget("coder")
    nb.trace(widget, "coder")
    widget.locator(".runstop-stop").click()
    expect(widget.locator(".runstop-status")).to_have_text("cancelled", timeout=15_000)
    states = nb.traced("coder")
    stopping = [i for i, (label, disabled, _) in enumerate(states) if label == "Stopping…" and disabled]
    cancelled = [i for i, (_, _, status) in enumerate(states) if status == "cancelled"]
    assert stopping and cancelled and stopping[0] < cancelled[0], f"button/status states: {states}"
    expect(widget.locator(".runstop-rerun")).to_be_visible()
    assert nb.run("coder").status == "cancelled"
    nb.poll(lambda: not tree_by_cookie(coder.cookie), 5, f"coder's tree {tree} to be gone")

    for name in ("planner", "reviewer"):
        before = last_step(nb, name)
        nb.poll(partial(lambda n, b: last_step(nb, n) > b + 2, name, before), 10, f"{name} to keep streaming")
        expect(nb.widget(name).locator(".runstop-status")).to_have_text("running")
        assert tree_by_cookie(live[name].cookie), f"{name}'s tree died with coder's"


def test_stop_escalates_on_an_agent_that_ignores_sigterm(notebook: Notebook, measure: Measure) -> None:
    nb = notebook([LOAD, STUBBORN])
    nb.run_all()
    widget = nb.widget("stubborn")
    expect(widget).to_have_count(1)
    wait_streaming(nb, ["stubborn"], "still here")
    run = nb.run("stubborn")
    assert tree_by_cookie(run.cookie)

    clicked = time.monotonic()
    widget.locator(".runstop-stop").click()
    # The grace (1 s) is long enough to see the in-between state with plain polling.
    expect(widget.locator(".runstop-stop")).to_have_text("Stopping…")
    expect(widget.locator(".runstop-stop")).to_be_disabled()
    expect(widget.locator(".runstop-status")).to_have_text("stopping")
    nb.poll(lambda: any("ignoring SIGTERM" in line for line in nb.output_lines(widget)), 10,
            "the agent to report (and ignore) SIGTERM")
    expect(widget.locator(".runstop-status")).to_have_text("cancelled", timeout=15_000)
    took = time.monotonic() - clicked
    measure("stubborn_click_to_cancelled_s", round(took, 3))
    assert took >= 1.0, f"cancelled after {took:.2f} s: the 1 s grace was not waited out"
    ended = nb.run("stubborn")
    assert (ended.status, ended.escalated) == ("cancelled", True)
    nb.poll(lambda: not tree_by_cookie(run.cookie), 5, "the stubborn tree to be gone")


def test_kernel_restart_from_the_ui_ends_every_tree(notebook: Notebook, measure: Measure) -> None:
    nb = notebook([LOAD, MIXED])
    nb.run_all()
    expect(nb.widgets).to_have_count(3)
    wait_streaming(nb, ["tree"], "heartbeat")
    wait_streaming(nb, ["stubborn"], "still here")
    wait_streaming(nb, ["counter"], "working on step")
    runs = nb.live_runs()
    assert set(runs) == {"tree", "stubborn", "counter"}
    # spawner + 3 children + a setsid'd child + a double-forked daemon (the guard carries no cookie)
    nb.poll(lambda: len(tree_by_cookie(runs["tree"].cookie)) >= 6, 10, "the spawner's whole tree")
    old_kernel = nb.kernel_pid()

    # The Kernel menu's "Restart Kernel…" (kernelmenu:restart in Lab 4.6 and Notebook 7.6).
    # Not awaited: its promise resolves only once the dialog below is answered.
    nb.page.evaluate("() => { window.jupyterapp.commands.execute('kernelmenu:restart'); }")
    accept = nb.page.locator(".jp-Dialog .jp-mod-accept")
    expect(accept).to_have_text(re.compile("Restart"))
    cells = nb.page.locator(".runstop-cell")
    def xs() -> list[float | None]:
        return [box["x"] if (box := cells.nth(i).bounding_box()) else None for i in range(3)]

    before = xs()
    clicked = time.monotonic()
    accept.click()
    # Every view says so in place within 5 s: buttons disabled, no broken-link icon, no shift.
    for name in runs:
        w = nb.widget(name)
        expect(w.locator(".runstop-gone")).to_have_text(
            "kernel gone: this run was stopped with its kernel", timeout=max(0.1, 5 - (time.monotonic() - clicked)) * 1000)
        expect(w.locator(".runstop-stop")).to_be_disabled()
    measure("restart_click_to_views_gone_s", round(time.monotonic() - clicked, 3))
    assert nb.page.evaluate(BROKEN)["icons"] == 0, "a broken-link icon is drawn"
    assert xs() == before, "the grid's layout moved"
    for name, run in runs.items():
        nb.poll(partial(lambda r: not tree_by_cookie(r.cookie), run), 5 - (time.monotonic() - clicked),
                f"{name}'s tree to be gone after the kernel restart")
    gone_after = time.monotonic() - clicked
    measure("restart_click_to_trees_gone_s", round(gone_after, 3))
    assert gone_after <= 5.0
    nb.poll(lambda: nb.kernel_pid() not in (None, old_kernel), 30, "the restarted kernel")
    assert nb.runs() == []
