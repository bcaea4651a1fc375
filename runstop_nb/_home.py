"""The runs home: where logs and history live (``.runstop/`` or ``$RUNSTOP_NB_HOME``)."""

from __future__ import annotations

import os
from pathlib import Path

HOME_VAR = "RUNSTOP_NB_HOME"


def runs_home() -> Path:
    """The runs home, created on first use: mode 0700, with a ``.gitignore`` of ``*``.

    Agent output often holds secrets, so the folder is private and never committed.
    """
    home = Path(os.environ.get(HOME_VAR) or Path.cwd() / ".runstop").absolute()
    if not (home / ".gitignore").exists():
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(home, 0o700)
        (home / ".gitignore").write_text("# runstop_nb logs may hold secrets: never commit them\n*\n")
    return home


def run_dir(run_id: str) -> Path:
    return runs_home() / "runs" / run_id
