"""A notebook opened in a real browser, in JupyterLab 4 or Notebook 7, and its run widgets.

Both front ends expose the same application object (``--expose-app-in-browser``), so
cells are run through the same commands a user's menu runs, and the notebook panel is
``jupyterapp.shell.currentWidget`` in both.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest
from playwright.sync_api import Locator, Page

from .probe import KernelProbe, RunInfo, pids_owned_by, tree_by_cookie
from .server import JupyterServer

# Page errors that are upstream and harmless (docs/browser-tests.md): Notebook 7.6.5 raises this on
# every page load, before any notebook content exists.
IGNORED_PAGE_ERRORS = (
    re.compile(r"Cannot read properties of undefined \(reading 'schema'\)"),
)

LOAD = "%load_ext runstop_nb"
PANEL = "window.jupyterapp.shell.currentWidget"
KERNEL_IDLE = f"""() => {{
  const w = window.jupyterapp && {PANEL};
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.status === 'idle' && !!w.content;
}}"""
# The error outputs of every code cell, from the notebook model (what the user would see).
CELL_ERRORS = f"""() => {{
  const cells = {PANEL}.content.widgets;
  const errors = [];
  for (const cell of cells) {{
    const outputs = cell.model.outputs;
    if (!outputs) continue;
    for (let i = 0; i < outputs.length; i++) {{
      const o = outputs.get(i).toJSON();
      if (o.output_type === 'error') errors.push(o.ename + ': ' + o.evalue);
    }}
  }}
  return errors;
}}"""


def write_notebook(path: Path, cells: list[str]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    nbformat.write(nb, path)


class NotebookPage:
    """One notebook file, its browser page, and a silent probe of its kernel."""

    def __init__(self, server: JupyterServer, page: Page, name: str) -> None:
        self.server = server
        self.page = page
        self.name = name
        self.page_errors: list[str] = []
        self.cookies: set[str] = set()  # every run this test's kernel started, for cleanup
        self.kernels: set[int] = set()  # every kernel pid seen, for cleanup of unseen runs
        self.probe: KernelProbe | None = None
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))

    # -- waiting ------------------------------------------------------------------------

    def poll(self, predicate: Callable[[], Any], timeout: float, what: str, step_ms: int = 50) -> Any:
        """Poll until predicate() is truthy, letting the page's event handlers run meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"[{self.server.frontend}] timed out after {timeout} s waiting for {what}")
            self.page.wait_for_timeout(step_ms)

    # -- notebook -----------------------------------------------------------------------

    def open(self, timeout: float = 90.0) -> NotebookPage:
        kernel_id = self.server.start_session(self.name)
        connection = self.server.runtime / f"kernel-{kernel_id}.json"
        self.page.goto(self.server.notebook_url(self.name))
        self.page.wait_for_function(KERNEL_IDLE, timeout=timeout * 1000, polling=100)
        assert self.server.kernel_id(self.name) == kernel_id, "the page started another kernel"
        # Prove the page-error hook is live on this page before trusting its silence.
        self.page.evaluate("() => { setTimeout(() => { throw new Error('runstop-e2e canary'); }, 0); }")
        self.poll(lambda: any("runstop-e2e canary" in e for e in self.page_errors), 10, "the canary page error")
        self.page_errors = [e for e in self.page_errors if "runstop-e2e canary" not in e]
        self.probe = KernelProbe(connection)
        self.server.remember_children()
        self.kernel_pid()
        return self

    def execute(self, command: str, timeout: float = 60.0) -> None:
        """Run a front-end command (as its menu item does), await it, then the idle kernel."""
        self.page.evaluate(
            "([c, ms]) => Promise.race([window.jupyterapp.commands.execute(c),"
            " new Promise((_, no) => setTimeout(() => no(new Error(c + ' timed out')), ms))])",
            [command, timeout * 1000])
        self.page.wait_for_function(KERNEL_IDLE, timeout=timeout * 1000, polling=100)

    def run_all(self) -> None:
        """Run every cell, as Run > Run All Cells does; fail on any error output."""
        self.execute("notebook:run-all-cells")
        self.assert_no_cell_errors()

    def run_cell(self, index: int, source: str | None = None) -> None:
        """Select cell ``index`` (optionally give it new source, as typing would), and run it."""
        self.page.evaluate(
            f"""([i, src]) => {{
                const nb = {PANEL}.content;
                if (src !== null) nb.widgets[i].model.sharedModel.setSource(src);
                nb.activeCellIndex = i;
                nb.deselectAll();
            }}""", [index, source])
        self.execute("notebook:run-cell")
        self.assert_no_cell_errors()

    def cell_text(self, index: int) -> str:
        return str(self.page.evaluate(
            f"(i) => {PANEL}.content.widgets[i].node.querySelector('.jp-Cell-outputArea').innerText",
            index))

    def assert_no_cell_errors(self) -> None:
        errors = self.page.evaluate(CELL_ERRORS)
        assert not errors, f"[{self.server.frontend}] cells raised: {errors}"

    def unexpected_page_errors(self) -> list[str]:
        return [e for e in self.page_errors if not any(p.search(e) for p in IGNORED_PAGE_ERRORS)]

    # -- kernel side --------------------------------------------------------------------

    def runs(self) -> list[RunInfo]:
        assert self.probe is not None
        found = self.probe.runs()
        self.cookies.update(r.cookie for r in found)
        return found

    def kernel_pid(self) -> int | None:
        """The kernel's pid, or None while it does not answer (restarting)."""
        assert self.probe is not None
        try:
            pid = self.probe.eval("__import__('os').getpid()", timeout=3)
        except TimeoutError:
            return None
        assert isinstance(pid, int)
        self.kernels.add(pid)
        return pid

    def run(self, name: str) -> RunInfo:
        """The kernel's latest run called ``name``."""
        found = [r for r in self.runs() if r.name == name]
        assert found, f"the kernel has no run named {name!r}"
        return found[-1]

    def live_runs(self) -> dict[str, RunInfo]:
        return {r.name: r for r in self.runs() if r.status in ("running", "stopping")}

    def leftovers(self) -> list[int]:
        """Live processes of any run this page's kernels started (by cookie or by owner)."""
        found = {p for c in self.cookies for p in tree_by_cookie(c)}
        for kernel in self.kernels:
            found |= pids_owned_by(kernel)
        return sorted(found)

    # -- run widgets --------------------------------------------------------------------

    @property
    def widgets(self) -> Locator:
        return self.page.locator(".runstop-run")

    def widget(self, name: str) -> Locator:
        """The run widget showing the run called ``name`` (its name label, exactly)."""
        return self.widgets.filter(has=self.page.locator(".runstop-name", has_text=re.compile(f"^{re.escape(name)}$")))

    def text(self, widget: Locator, css: str) -> str:
        return widget.locator(css).first.inner_text().strip()

    def output_lines(self, widget: Locator) -> list[str]:
        """The lines shown in a run view's output area (one <pre>, stderr in spans)."""
        text = widget.locator(".runstop-output").first.evaluate("(el) => el.textContent")
        return [line for line in str(text).split("\n") if line.strip()]

    def trace(self, widget: Locator, key: str) -> None:
        """Record every state of the widget's Stop button and status badge, in the page.

        A MutationObserver sees each DOM change as the front end applies it, so a state
        that lasts a few milliseconds ("Stopping…" on a tree that dies at once) is still seen.
        """
        widget.evaluate(
            """(el, key) => {
                window.__runstopTrace = window.__runstopTrace || {};
                const seen = window.__runstopTrace[key] = [];
                const snap = () => {
                    const b = el.querySelector('.runstop-stop');
                    const s = el.querySelector('.runstop-status');
                    const row = JSON.stringify([b ? b.textContent.trim() : null,
                                                b ? b.disabled : null, s ? s.textContent.trim() : null]);
                    if (seen[seen.length - 1] !== row) seen.push(row);
                };
                snap();
                new MutationObserver(snap).observe(el, {subtree: true, childList: true,
                                                        characterData: true, attributes: true});
            }""", key)

    def traced(self, key: str) -> list[tuple[str | None, bool | None, str | None]]:
        rows = self.page.evaluate("(key) => (window.__runstopTrace || {})[key] || []", key)
        return [tuple(json.loads(r)) for r in rows]
