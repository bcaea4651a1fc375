"""runstop_nb: run, watch, stop and inspect agent processes from Jupyter notebooks.

In a notebook: ``%load_ext runstop_nb`` then ``%agent_run -- CMD ...``. From Python::

    import runstop_nb
    run = runstop_nb.start(["python", "agent.py"], name="reviewer")
    run.stop()          # the whole process tree, verified dead
"""

from __future__ import annotations

from typing import Any

from ._api import get, runs, start, stop_all
from ._janitor import reap_orphans
from ._pastrun import history, load
from ._results import StopResult, Survivor
from ._run import Run
from .errors import (
    CommandNotFoundError,
    InvalidSpecError,
    NameInUseError,
    RunNotFoundError,
    RunstopError,
    StartError,
    TransitionError,
)

__version__ = "0.1.0"

__all__ = [
    "CommandNotFoundError",
    "InvalidSpecError",
    "NameInUseError",
    "Run",
    "RunNotFoundError",
    "RunstopError",
    "StartError",
    "StopResult",
    "Survivor",
    "TransitionError",
    "dashboard",
    "get",
    "history",
    "load",
    "reap_orphans",
    "runs",
    "start",
    "stop_all",
]


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
