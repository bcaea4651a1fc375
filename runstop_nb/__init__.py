"""runstop_nb: run, watch, stop and inspect agent processes from Jupyter notebooks.

In a notebook: ``%load_ext runstop_nb`` then ``%agent_run -- CMD ...``. From Python::

    import runstop_nb
    run = runstop_nb.start(["python", "agent.py"], name="reviewer")
    run.stop()          # the whole process tree, verified dead

Layout (docs/ARCHITECTURE.md has the whole picture): the core (``_run``, ``_api``,
``_launcher`` and its backends, ``_proc``) knows nothing of widgets or SQLite; the history
(``_history``, ``_recorder``, ``_pastrun``, ``_janitor``) and the UI (``_widget``,
``_grid``, ``_magics``, ``_cli``) hook into it here, by name.
"""

from __future__ import annotations

from typing import Any

from . import _recorder
from ._api import get, runs, start, stop_all
from ._janitor import reap_orphans
from ._kernelstate import kernel_state
from ._pastrun import PastRun, Records, history, load
from ._record import RunRecord
from ._results import StopResult, Survivor
from ._run import Run
from .errors import (
    CommandNotFoundError,
    HistoryError,
    InputError,
    InvalidSpecError,
    NameInUseError,
    RunNotFoundError,
    RunstopError,
    StartError,
    TransitionError,
    WorktreeError,
)

__version__ = "0.2.0"

__all__ = [
    "CommandNotFoundError",
    "HistoryError",
    "InputError",
    "InvalidSpecError",
    "NameInUseError",
    "PastRun",
    "Records",
    "Run",
    "RunNotFoundError",
    "RunRecord",
    "RunstopError",
    "StartError",
    "StopResult",
    "Survivor",
    "TransitionError",
    "WorktreeError",
    "__version__",
    "dashboard",
    "get",
    "history",
    "load",
    "reap_orphans",
    "runs",
    "start",
    "stop_all",
]

_recorder.install()  # every run is recorded in its runs home's history
kernel_state().hook("display", "runstop_nb._widget:bundle")  # by name: ipywidgets loads on first display


def load_ipython_extension(ipython: Any) -> None:
    from ._magics import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from ._magics import unload

    unload(ipython)


def dashboard(cols: int | None = None) -> Any:
    """A live grid of every run in this kernel, with "Stop all". Display it in a cell."""
    from ._grid import dashboard as _dashboard

    return _dashboard(cols)
