"""nbval validates the shipped notebooks; afterwards none of their agents may be alive.

nbval runs in a subprocess with its own runs home. Every agent inherits the kernel's
environment, so the home's path in /proc/*/environ identifies exactly this run's processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import kill_pids, pids_with, wait_for

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"


@pytest.mark.kernel
def test_notebooks_pass_nbval_and_leave_nothing_running(tmp_path: Path) -> None:
    home = tmp_path / "nbval-home"
    marker = f"RUNSTOP_NB_HOME={home}\0".encode()
    env = dict(os.environ, RUNSTOP_NB_HOME=str(home))
    env.pop("PYTEST_CURRENT_TEST", None)
    for key in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY"):
        env.pop(key, None)  # agents.ipynb rehearses against the loopback model, never a real service
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-q",
             "--rootdir", str(NOTEBOOKS), "-c", os.devnull,
             str(NOTEBOOKS / "quickstart.ipynb"), str(NOTEBOOKS / "parallel_agents.ipynb"),
             str(NOTEBOOKS / "agents.ipynb")],  # loopback mode: the real CLIs if installed, else the fakes
            env=env, capture_output=True, text=True, timeout=300, cwd=NOTEBOOKS)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        assert " passed" in proc.stdout
        wait_for(lambda: not pids_with(marker), 10,
                 "every agent of the notebooks to be gone after nbval's teardown")
    finally:
        kill_pids(pids_with(marker))
