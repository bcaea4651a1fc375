"""Talking to a running agent, and reviewing what a worktree agent changed, in the browser."""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from .page import LOAD, NotebookPage
from .probe import tree_by_cookie

pytestmark = pytest.mark.e2e
Notebook = Callable[[list[str]], NotebookPage]

# Echoes every line it reads; no braces or dollars, so the magic expands nothing in it.
ECHO = ("%agent_run --stdin --name echo -- python -c "
        "\"import sys; print('ready', flush=True); [print('echo: ' + l.strip(), flush=True) for l in sys.stdin]\"")
OUTPUT = "__import__('runstop_nb').get({name!r}).output({stream!r})"


def test_a_line_typed_into_the_input_box_reaches_the_agent(notebook: Notebook) -> None:
    nb = notebook([LOAD, ECHO])
    nb.run_all()
    w = nb.widget("echo")
    nb.poll(lambda: "ready" in nb.output_lines(w), 30, "the echo agent to start")
    box = w.locator(".runstop-input .rs-line")
    expect(box).to_be_visible()
    sent = ["hello from the browser", "a second line"]

    def echoed(text: str) -> bool:
        return f"echo: {text}" in nb.output_lines(w)

    for text in sent:
        box.fill(text)
        box.press("Enter")
        expect(box).to_have_value("")
        nb.poll(partial(echoed, text), 15, f"the echo of {text!r}")
    # The view shows the conversation in order, what was sent marked as input.
    assert nb.output_lines(w) == ["ready", *(line for t in sent for line in (t, f"echo: {t}"))]
    shown_sent = w.locator(".runstop-output .rs-stdin").all_text_contents()
    assert [line for text in shown_sent for line in text.splitlines() if line] == sent
    assert nb.probe is not None
    # The log has what was sent, as its own stream, in order with what the agent wrote.
    assert nb.probe.eval(OUTPUT.format(name="echo", stream="stdin")) == "".join(f"{t}\n" for t in sent)
    log = nb.probe.eval(OUTPUT.format(name="echo", stream="all"))
    assert isinstance(log, str)
    order = [log.index(part) for t in sent for part in (f"{t}\n", f"echo: {t}\n")]
    assert order == sorted(order), log

    # Ctrl+C is SIGINT to the agent, not a stop: Python raises KeyboardInterrupt and ends on it.
    info = nb.run("echo")
    w.locator(".runstop-interrupt").click()
    expect(w.locator(".runstop-status")).to_have_text("failed", timeout=15_000)
    expect(w.locator(".runstop-output")).to_contain_text("KeyboardInterrupt")
    expect(w.locator(".runstop-input")).to_be_hidden()
    assert nb.probe.eval("__import__('runstop_nb').get('echo').last_stop") is None
    nb.poll(lambda: not tree_by_cookie(info.cookie), 10, "the echo agent's tree to be gone")


# The agent edits a tracked file (one line changed, one added) and creates another (3 lines).
EDIT = """\
import pathlib
notes = pathlib.Path("notes.txt")
lines = notes.read_text().splitlines()
lines[1] = "second line, edited by the agent"
notes.write_text("\\n".join([*lines, "a line added by the agent"]) + "\\n")
pathlib.Path("todo.txt").write_text("one\\ntwo\\nthree\\n")
print("edited", flush=True)
"""
EXPECTED = {"notes.txt": ("+2", "−1"), "todo.txt": ("+3", "−0")}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=runstop e2e", "-c", "user.email=e2e@localhost", *args],
                          cwd=repo, check=True, capture_output=True, text=True).stdout


def test_a_finished_worktree_run_lists_its_files_and_shows_its_diff(notebook: Notebook, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "notes.txt").write_text("first line\nsecond line\nthird line\n")
    git(repo, "add", "notes.txt")
    git(repo, "commit", "-q", "-m", "start")
    script = tmp_path / "edit.py"
    script.write_text(EDIT)
    cell = (f"%agent_run --worktree --cwd {shlex.quote(str(repo))} --name editor -- "
            f"python {shlex.quote(str(script))}")
    nb = notebook([LOAD, cell])
    nb.run_all()
    w = nb.widget("editor")
    expect(w.locator(".runstop-status")).to_have_text("completed", timeout=30_000)
    assert nb.probe is not None
    tree: Any = nb.probe.eval("(lambda t: (t.path, t.branch))(__import__('runstop_nb').get('editor').worktree)")
    path, branch = tree
    assert Path(path).resolve() != repo.resolve() and branch.startswith("runstop/editor-"), tree
    assert (repo / "notes.txt").read_text() == "first line\nsecond line\nthird line\n", "the agent wrote in the repository"

    files = w.locator(".runstop-files")
    expect(files).to_be_visible(timeout=15_000)
    expect(files.locator(".rs-files-bar")).to_contain_text("2 files changed")
    rows = files.locator(".rs-file")
    expect(rows).to_have_count(len(EXPECTED))
    for name, (added, removed) in EXPECTED.items():
        row = rows.filter(has=nb.page.locator(".rs-path", has_text=re.compile(f"^{re.escape(name)}$")))
        expect(row.locator(".rs-add")).to_have_text(added)
        expect(row.locator(".rs-del")).to_have_text(removed)

    # One click shows the diff text, as git itself tells it (read here, from the test).
    files.locator(".runstop-diff-btn").click()
    diff = files.locator(".runstop-diff")
    expect(diff).to_contain_text("+second line, edited by the agent", timeout=30_000)
    git(Path(path), "add", "-N", "todo.txt")  # untracked files show in `git diff` once intended
    expected = git(Path(path), "diff", "--no-color", "HEAD")
    for line in expected.splitlines():
        if line[:1] in "+-" and not line.startswith(("+++", "---")):
            expect(diff).to_contain_text(line)
    expect(files.locator(".runstop-diff-btn")).to_have_text("Hide diff")
    files.locator(".runstop-diff-btn").click()
    expect(diff).to_have_count(0)
