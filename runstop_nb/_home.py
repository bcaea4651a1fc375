"""The runs home: where logs and history live.

``$RUNSTOP_NB_HOME`` names the folder itself when set; otherwise it is ``.runstop`` in the
kernel's working folder. ``home_path()`` only says where it is (the CLI must never litter
a folder); ``runs_home()`` also creates it.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_VAR = "RUNSTOP_NB_HOME"
FOLDER = ".runstop"
DB_NAME = "history.sqlite"


def home_path(cwd: Path | None = None) -> Path:
    """The runs home's absolute path, without creating it."""
    return Path(os.environ.get(HOME_VAR) or (cwd or Path.cwd()) / FOLDER).absolute()


def runs_home() -> Path:
    """The runs home, created on first use: mode 0700, with a ``.gitignore`` of ``*``.

    Agent output often holds secrets, so the folder is private and never committed.
    """
    home = home_path()
    if not (home / ".gitignore").exists():
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(home, 0o700)
        (home / ".gitignore").write_text("# runstop_nb logs may hold secrets: never commit them\n*\n")
    return home


def run_dir(run_id: str) -> Path:
    return runs_home() / "runs" / run_id


def db_path(home: Path | None = None) -> Path:
    return (home or home_path()) / DB_NAME
