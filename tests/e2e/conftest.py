"""Browser fixtures: one Jupyter server per front end, one Chromium, a fresh context per test.

Debian's Chromium only (``/usr/bin/chromium``): a downloaded browser is never used, so
``playwright install`` is never needed. Select or skip these tests with ``-m e2e`` /
``-m "not e2e"``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, ViewportSize, sync_playwright

from ..helpers import kill_pids
from .page import NotebookPage, write_notebook
from .server import JupyterServer

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("RUNSTOP_CHROMIUM", "/usr/bin/chromium")
FRONTENDS = ("lab", "notebook")
BROWSER_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]
VIEWPORT: ViewportSize = {"width": 1480, "height": 960}


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} not found: run scripts/setup.sh (apt-get install chromium), "
                    "or deselect the browser tests with -m 'not e2e'")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session", params=FRONTENDS)
def server(request: pytest.FixtureRequest) -> Iterator[JupyterServer]:
    """One server per front end, shared by its tests (each test has its own notebook and kernel)."""
    srv = JupyterServer(request.param, ARTIFACTS / f"e2e-server-{request.param}.log")
    try:
        yield srv.start()
    finally:
        srv.stop()


@pytest.fixture
def frontend(server: JupyterServer) -> str:
    return server.frontend


@pytest.fixture
def notebook(server: JupyterServer, browser: Browser,
             request: pytest.FixtureRequest) -> Iterator[Callable[[list[str]], NotebookPage]]:
    """Open a new notebook holding ``cells`` in a fresh browser context; clean up by pid after."""
    opened: list[tuple[NotebookPage, BrowserContext]] = []

    def open_notebook(cells: list[str]) -> NotebookPage:
        name = f"{request.node.originalname}-{len(opened)}.ipynb"
        write_notebook(server.root / name, cells)
        context = browser.new_context(viewport=VIEWPORT)
        nb = NotebookPage(server, context.new_page(), name)
        opened.append((nb, context))
        return nb.open()

    yield open_notebook

    problems = []
    for nb, context in opened:
        call = getattr(request.node, "rep_call", None)
        if call is None or call.failed:
            ARTIFACTS.mkdir(exist_ok=True)
            try:
                nb.page.screenshot(path=ARTIFACTS / f"failed-{server.frontend}-{nb.name}.png")
            except Exception:
                pass
        errors = nb.unexpected_page_errors()
        if errors:
            problems.append(f"page errors in {nb.name}: {errors}")
        if nb.probe is not None:
            try:
                nb.runs()  # remember every cookie the kernel knows of, then stop them all
                nb.probe.eval("[r.status for r in __import__('runstop_nb').stop_all(grace=0.5)]", timeout=20)
            except Exception:
                pass
            nb.probe.close()
        context.close()
        server.shutdown_sessions(nb.name)
        deadline = time.monotonic() + 10
        while (left := nb.leftovers()) and time.monotonic() < deadline:
            time.sleep(0.1)
        if left:
            kill_pids(left)
            problems.append(f"agent processes outlived their notebook {nb.name}: {left} (killed)")
    if problems:
        call = getattr(request.node, "rep_call", None)
        if call is not None and call.passed:
            pytest.fail("; ".join(problems))
        print("\n".join(problems), file=sys.stderr)  # the test already failed; add context


MEASUREMENTS = ARTIFACTS / "e2e-measurements.jsonl"


@pytest.fixture(scope="session", autouse=True)
def fresh_measurements() -> None:
    """Each session's figures replace the last session's."""
    MEASUREMENTS.unlink(missing_ok=True)


@pytest.fixture
def measure(request: pytest.FixtureRequest) -> Callable[[str, object], None]:
    """Record a figure (a latency, a line count) in test-artifacts/e2e-measurements.jsonl."""

    def record(key: str, value: object) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        row = {"test": request.node.nodeid, "key": key, "value": value, "at": time.time()}
        with open(MEASUREMENTS, "a") as f:
            f.write(json.dumps(row) + "\n")

    return record
