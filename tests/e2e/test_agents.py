"""Coding agents in the browser: Claude Code, Codex and Gemini streams as cards, totals, a budget.

The agents are the fake CLIs of notebooks/agents/bin, which replay streams captured from the
real programs (notebooks/agents/fake_agent.py), put on the agents' PATH with ``--env``, so
the cells read as a user's would: ``claude -p ... --output-format stream-json --verbose``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import ARTIFACTS, ROOT, VIEWPORT
from .page import LOAD, NotebookPage
from .probe import tree_by_cookie
from .server import AGENTS
from .test_views import publish

pytestmark = pytest.mark.e2e
Notebook = Callable[[list[str]], NotebookPage]
Measure = Callable[[str, object], None]

KINDS = ("claude", "codex", "gemini")
# The shell command every tool_then_answer capture runs (checked against the captures below).
COMMAND = "echo hello from the rehearsal > note.txt"
HOLD = 3  # seconds each agent's first tool call runs: the cards must show while the run is live
AGENT_PATH = "import os\nagent_path = os.path.abspath('agents/bin') + os.pathsep + os.environ['PATH']"
GRID = f"""%%agent_run --cols 3 --env PATH={{agent_path}} --env FAKE_AGENT_HOLD={HOLD}
claude: claude -p "write the note" --output-format stream-json --verbose
codex: codex exec --json "write the note"
gemini: gemini -p "write the note" --output-format stream-json
"""
# long_tool: the agent's tool runs `sleep 300` in a session of its own, after a first message
# whose usage is already above the limit; only the budget ends this run.
LIMIT = 1000
BUDGET = ("%agent_run --name over-budget --max-tokens 1000 --env PATH={agent_path} -- "
          'claude -p "[script:long_tool] write the note" --output-format stream-json --verbose')
FIGURE = re.compile(r"budget exceeded: ([\d,]+) tokens, limit 1,000")
SUMMARY = ("(lambda a: None if a is None else (a.turns, a.tool_calls, a.usage.input_tokens,"
           " a.usage.output_tokens, a.usage.cost_usd, a.session_id, a.result))"
           "(__import__('runstop_nb').get({name!r}).agent)")
DOCS_SHOT = ROOT / "docs" / "agents.png"


def count(n: int) -> str:
    """A token count as the run view's header prints it (runstop.js ``count``)."""
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    if n >= 1e4:
        return f"{round(n / 1e3)}k"
    return f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def test_the_captures_run_the_command() -> None:
    for kind in KINDS:
        assert COMMAND in (AGENTS / "streams" / f"{kind}-tool_then_answer.jsonl").read_text(), kind


def test_three_agents_show_cards_totals_and_a_budget_stop(notebook: Notebook, frontend: str,
                                                          measure: Measure) -> None:
    nb = notebook([LOAD, AGENT_PATH, GRID, BUDGET])
    nb.run_all()
    expect(nb.widgets).to_have_count(4)
    assert nb.probe is not None

    # While each agent's first tool runs, the view is live and already shows its tool card.
    for kind in KINDS:
        w = nb.widget(kind)
        tool = w.locator(".runstop-cards .rs-card.rs-kind-tool")
        expect(tool.first).to_contain_text(COMMAND, timeout=HOLD * 3000)
        expect(w.locator(".runstop-status")).to_have_text("running")
        expect(w.locator(".runstop-tabs")).to_be_visible()
        expect(w.locator(".runstop-output")).to_be_hidden()  # the raw stream is one click away

    for kind in KINDS:
        w = nb.widget(kind)
        expect(w.locator(".runstop-status")).to_have_text("completed", timeout=30_000)
        assert nb.run(kind).status == "completed"
        summary: Any = nb.probe.eval(SUMMARY.format(name=kind))
        turns, tools, tokens_in, tokens_out, cost, session, result = summary
        assert tools >= 1 and tokens_in > 0 and tokens_out > 0, (kind, summary)
        # The totals in the header are the kernel's, as the header formats them.
        head = w.locator(".runstop-head .runstop-agent")
        expect(head).to_contain_text(f"{turns} turn{'s' if turns != 1 else ''}")
        expect(head).to_contain_text(f"{tools} tool{'s' if tools != 1 else ''}")
        expect(head).to_contain_text(f"{count(tokens_in)} in / {count(tokens_out)} out")
        if cost is not None:
            expect(head).to_contain_text(f"${cost:.3f}" if cost < 1 else f"${cost:.2f}")
        else:
            expect(head).not_to_contain_text("$")
        assert session and session in str(head.get_attribute("title")), (kind, session)
        # The cards: the tool call with its command, and the final result.
        expect(w.locator(".rs-card.rs-kind-tool .rs-card-head")).to_contain_text(COMMAND)
        assert result, kind
        expect(w.locator(".rs-card.rs-kind-result").last).to_contain_text(result)
        # The raw stream is one click away: the JSON lines, as the agent wrote them.
        w.locator(".runstop-tabs .rs-tab", has_text="Raw output").click()
        expect(w.locator(".runstop-output")).to_contain_text('"type"')
        expect(w.locator(".runstop-cards")).to_be_hidden()
        w.locator(".runstop-tabs .rs-tab", has_text="Cards").click()
        expect(w.locator(".runstop-cards")).to_be_visible()

    # The budget: cancelled by the ladder, the figure shown, the whole tree dead.
    over = nb.widget("over-budget")
    expect(over.locator(".runstop-status")).to_have_text("cancelled", timeout=30_000)
    info = nb.run("over-budget")
    assert info.status == "cancelled"
    stop: Any = nb.probe.eval("(lambda s: (s.cause, s.stopped, s.note))"
                              "(__import__('runstop_nb').get('over-budget').last_stop)")
    cause, stopped, note = stop
    assert cause == "budget" and stopped, stop
    figure = FIGURE.search(note or "")
    assert figure and int(figure.group(1).replace(",", "")) > LIMIT, note
    expect(over.locator(".runstop-stopinfo")).to_contain_text("budget exceeded")
    expect(over.locator(".runstop-stopinfo")).to_contain_text(figure.group(0))
    expect(over.locator(".runstop-stopinfo")).to_have_class(re.compile(r"\brs-budget\b"))
    nb.poll(lambda: not tree_by_cookie(info.cookie), 10, "the budget-stopped tree to be gone")
    measure("budget_tokens", int(figure.group(1).replace(",", "")))

    if frontend == "lab":
        # The docs picture: the grid of three agents and the run its budget stopped.
        nb.page.evaluate("() => { window.jupyterapp.shell.collapseLeft();"
                         " window.jupyterapp.shell.currentWidget.content.activeCellIndex = 0; }")
        nb.page.set_viewport_size({"width": VIEWPORT["width"], "height": 1300})  # both cells at once
        cells = nb.page.locator(".jp-CodeCell")
        cells.nth(2).evaluate("(el) => el.scrollIntoView({block: 'start'})")
        nb.page.wait_for_timeout(300)
        top, bottom = cells.nth(2).bounding_box(), cells.nth(3).bounding_box()
        assert top is not None and bottom is not None
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "agents-lab.png"
        nb.page.screenshot(path=shot, clip={
            "x": top["x"], "y": top["y"], "width": top["width"],
            "height": bottom["y"] + bottom["height"] - top["y"]})
        publish(shot, DOCS_SHOT)
