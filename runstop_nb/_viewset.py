"""Which views are open, where they are shown, and closing them when nothing can show them.

Every open comm model is a model the front end must restore on a page reload (a reload
with ~1,240 stale models failed half the time, docs/platform.md). So views record the
cells that displayed them (the front end's cell id, from the execute request), and when
a cell runs again its old outputs are gone: a view that no other cell shows is closed
then, with its Layout. A run has at most one run view (``view_for``), shown in as many
places as it is displayed, so a run costs two comm models whatever shows it.

Displays whose cell is unknown (a display from a thread, a front end that sends no cell
id) mark the view as shown somewhere unknown: it is never closed behind anybody's back.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Protocol

from ._kernelstate import kernel_state

UNKNOWN = "?"  # shown by a display whose cell is not known


class Closable(Protocol):
    shown_in: set[str]

    def close(self) -> None: ...


class ViewSet:
    """This kernel's open views (weakly held), and the run view of each run."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._views: weakref.WeakSet[Any] = weakref.WeakSet()
        self._of_run: dict[str, Any] = {}  # run id -> its run view
        self._hooked = False

    def add(self, view: Closable) -> None:
        with self.lock:
            self._views.add(view)
        self._hook()

    def remove(self, view: Any) -> None:
        with self.lock:
            self._views.discard(view)
            for run_id in [k for k, v in self._of_run.items() if v is view]:
                del self._of_run[run_id]

    def of_run(self, run_id: str) -> Any:
        with self.lock:
            return self._of_run.get(run_id)

    def claim(self, run_id: str, view: Any) -> Any:
        """Make ``view`` the run view of ``run_id``; return the view it replaces, if any."""
        with self.lock:
            old = self._of_run.get(run_id)
            self._of_run[run_id] = view
            return None if old is view else old

    def release(self, run_id: str, view: Any) -> None:
        with self.lock:
            if self._of_run.get(run_id) is view:
                del self._of_run[run_id]

    def views(self) -> list[Any]:
        with self.lock:
            return list(self._views)

    def cell_ran(self, cell_id: str | None) -> list[Any]:
        """A cell runs again: forget it as a place of display; close views shown nowhere now."""
        if not cell_id:
            return []
        closing = []
        with self.lock:
            for view in list(self._views):
                if cell_id in view.shown_in:
                    view.shown_in.discard(cell_id)
                    if not view.shown_in:
                        closing.append(view)
        for view in closing:
            try:
                view.close()
            except Exception:
                pass
        return closing

    def _hook(self) -> None:
        """Listen for cells being run (once per kernel), through IPython's ``pre_run_cell``."""
        if self._hooked:
            return
        self._hooked = True
        try:
            from IPython import get_ipython

            ip = get_ipython()
        except Exception:
            return
        if ip is None:
            return

        def pre_run_cell(info: Any = None) -> None:  # looked up by name: survives reloads
            kernel_state().fire("runstop_cell_ran", getattr(info, "cell_id", None))

        ip.events.register("pre_run_cell", pre_run_cell)
        kernel_state().hook("runstop_cell_ran", f"{__name__}:on_cell_ran")


def views() -> ViewSet:
    """This kernel's view set (kept across module reloads)."""
    return kernel_state().service("viewset", ViewSet)


def on_cell_ran(cell_id: str | None) -> None:
    views().cell_ran(cell_id)


def current_cell() -> str:
    """The cell id of the execute request being handled, or UNKNOWN."""
    try:
        from IPython import get_ipython

        kernel = getattr(get_ipython(), "kernel", None)
        parent = kernel.get_parent() if kernel is not None else None
    except Exception:
        return UNKNOWN
    if not parent or threading.current_thread() is not threading.main_thread():
        return UNKNOWN
    cell = (parent.get("metadata") or {}).get("cellId")
    return str(cell) if cell else UNKNOWN
