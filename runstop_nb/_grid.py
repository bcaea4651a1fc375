"""The grid of run views (one ``%%agent_run`` cell), and the dashboard of every run in the kernel.

A grid is one model of its own (plus its Layout) that lays its run views out in the
browser and offers "Stop all" with a confirmation; its run views are the runs' own
(``view_for``), so showing a run in a grid costs no extra model. The browser counts live
runs from the run views themselves: the grid sends nothing while its runs run.

The dashboard is the live table of runs (``_listing.Board``): one line per run, a Stop
per row, "Stop all", and one run opened below it at a time.
"""

from __future__ import annotations

from typing import Any

import traitlets as t

from . import _runstate as rs
from ._listing import Board
from ._widget import RunWidget, View, view_for

MIN_COLUMN = 420  # px: as many columns as fit, none narrower than this


class RunGrid(View):
    """Run views side by side: ``cols`` fixed columns, or as many as fit."""

    items = t.List(t.Unicode()).tag(sync=True)  # the run views' model ids, in order
    cols = t.Int(0).tag(sync=True)
    min_column = t.Int(MIN_COLUMN).tag(sync=True)

    def __init__(self, runs: list[Any], cols: int | None = None) -> None:
        """``runs`` may hold None for views bound later (agents still starting)."""
        self._views = [RunWidget(None) if r is None else view_for(r) for r in runs]
        super().__init__(kind="grid", cols=cols or 0, items=[v.model_id for v in self._views])

    @property
    def children(self) -> tuple[RunWidget, ...]:
        """The run views, in order (the magics bind them as their agents start)."""
        return tuple(self._views)

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[Any, Any], dict[Any, Any]] | None:
        data = super()._repr_mimebundle_(**kwargs)
        for view in self._views:  # shown here too: they close with the grid's cell
            view.shown_in |= self.shown_in
        return data

    def __repr__(self) -> str:
        return f"RunGrid({len(self._views)} runs)"

    def handle(self, action: str, content: dict[str, Any]) -> None:
        if action == "stop_all":
            live = [v.run for v in self._views
                    if v.run is not None and rs.is_live(v.run) and not v.run.done]
            for run in live:
                view = next(v for v in self._views if v.run is run)
                view.handle("stop", {})


def dashboard(cols: int | None = None) -> Board:
    """A live table of every run in this kernel, with a Stop per row and "Stop all".

    ``cols`` is accepted for compatibility and ignored: the table is one line per run."""
    return Board()
