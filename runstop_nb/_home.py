"""The runs home: where logs and history live, and how the CLI finds one.

A kernel's runs home is ``$RUNSTOP_NB_HOME`` when set (it names the folder itself), else
``.runstop`` in the kernel's working folder. ``home_path()`` only says where it is (the
CLI must never litter a folder); ``runs_home()`` also creates it.

The ``runstop`` CLI is usually started somewhere else than the kernel was, so
``find_home()`` looks further, and takes the first rule that applies:

1. ``--home DIR`` (``explicit``), anywhere on the command line;
2. ``$RUNSTOP_NB_HOME``;
3. ``./.runstop``, if it exists;
4. otherwise a ``.runstop/history.sqlite`` in the root folder of a running Jupyter server
   (its ``jpserver-*.json`` runtime file names ``root_dir``) or in one of that folder's
   immediate subfolders, or in an immediate subfolder of the current folder. Exactly one
   found is used (and the CLI says so); several are listed, and the CLI asks for
   ``--home``; none, and it says where it looked.

docs/cli.md states the same rule for users.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
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


@dataclass(frozen=True)
class HomeChoice:
    """Where the CLI's runs home is, and why: which rule chose it, and what else was looked at."""

    path: Path | None  # None: no rule found one (``looked`` says where it looked)
    rule: str  # "--home", "$RUNSTOP_NB_HOME", "./.runstop", "found", "ambiguous" or "none"
    found_in: str = ""  # for "found": the folder whose .runstop it is, and how it was found
    candidates: tuple[Path, ...] = ()  # for "ambiguous": every runs home found
    looked: tuple[str, ...] = ()  # for "none" (and "found"): the folders searched


def jupyter_roots() -> list[Path]:
    """Root folders of the Jupyter servers of this user that are running (from their runtime files)."""
    try:
        from jupyter_core.paths import jupyter_runtime_dir

        runtime = Path(jupyter_runtime_dir())
    except ImportError:  # jupyter_core's default on Linux, honouring its variable
        runtime = Path(os.environ.get("JUPYTER_RUNTIME_DIR")
                       or Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
                       / "jupyter" / "runtime")
    roots: list[Path] = []
    try:
        files = sorted(runtime.glob("jpserver-*.json"))
    except OSError:
        return []
    for path in files:
        try:
            info = json.loads(path.read_text())
            pid, root = int(info["pid"]), str(info.get("root_dir") or info.get("notebook_dir") or "")
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if root and _pid_alive(pid) and Path(root).expanduser() not in roots:  # a crashed server leaves its file
            roots.append(Path(root).expanduser())
    return roots


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's: it exists
    return pid > 0


def _homes_in(folder: Path) -> list[Path]:
    """``folder/.runstop`` and ``folder/*/.runstop`` that hold a history."""
    found = [folder / FOLDER] if (folder / FOLDER / DB_NAME).is_file() else []
    try:
        subs = sorted(p for p in folder.iterdir() if p.is_dir() and p.name != FOLDER)
    except OSError:
        return found
    return found + [s / FOLDER for s in subs if (s / FOLDER / DB_NAME).is_file()]


def find_home(explicit: str | None = None, cwd: Path | None = None) -> HomeChoice:
    """The runs home the CLI should read, by the rule in this module's docstring; never creates one."""
    if explicit:
        return HomeChoice(Path(explicit).expanduser().absolute(), "--home")
    if os.environ.get(HOME_VAR):
        return HomeChoice(Path(os.environ[HOME_VAR]).expanduser().absolute(), f"${HOME_VAR}")
    here = (cwd or Path.cwd()).absolute()
    if (here / FOLDER).is_dir():
        return HomeChoice(here / FOLDER, "./.runstop")
    found: dict[Path, str] = {}
    looked: list[str] = []
    for root in jupyter_roots():
        looked.append(f"{root} (a running Jupyter server's folder) and its subfolders")
        for home in _homes_in(root):
            found.setdefault(home.resolve(), f"in the folder of the Jupyter server at {root}")
    looked.append(f"the subfolders of {here}")
    for home in _homes_in(here):  # ./.runstop does not exist here: only subfolders count
        found.setdefault(home.resolve(), f"in a subfolder of {here}")
    if len(found) == 1:
        (path, how), = found.items()
        return HomeChoice(path, "found", how, looked=tuple(looked))
    if found:
        return HomeChoice(None, "ambiguous", candidates=tuple(found))
    return HomeChoice(None, "none", looked=(f"{here / FOLDER}", f"${HOME_VAR} (not set)", *looked))
