"""The grid of run widgets, and the dashboard of every run in the kernel."""

from __future__ import annotations

import threading
from typing import Any

import ipywidgets as w

from ._renderer import renderer, ui_lock
from ._widget import RunWidget

MIN_COLUMN = "420px"  # responsive: as many columns as fit, none narrower than this
MAX_ENDED = 24  # ended runs the dashboard shows (newest first); live runs are always shown


def grid_layout(cols: int | None) -> w.Layout:
    template = f"repeat({cols}, minmax(0, 1fr))" if cols else f"repeat(auto-fill, minmax({MIN_COLUMN}, 1fr))"
    return w.Layout(grid_template_columns=template, grid_gap="8px", width="100%")


class RunGrid(w.GridBox):  # type: ignore[misc]
    """Run widgets side by side: ``cols`` fixed columns, or as many as fit."""

    def __init__(self, runs: list[Any], cols: int | None = None) -> None:
        """``runs`` may hold None for widgets bound later (agents still starting)."""
        super().__init__([RunWidget(r) for r in runs], layout=grid_layout(cols))
        self.add_class("runstop-grid")

    def __repr__(self) -> str:
        return f"RunGrid({len(self.children)} runs)"


class Dashboard(w.VBox):  # type: ignore[misc]
    """Every run of this kernel, live: new runs appear within a second; "Stop all"."""

    def __init__(self, cols: int | None = None) -> None:
        self._summary = w.Label()
        self._summary.add_class("runstop-summary")
        self._stop_all = w.Button(description="Stop all", button_style="danger", icon="stop",
                                  layout=w.Layout(width="auto"))
        self._stop_all.add_class("runstop-stop-all")
        self._stop_all.on_click(self._on_stop_all)
        self._grid = RunGrid([], cols)
        self._widgets: dict[str, RunWidget] = {}
        self._last_sync = 0.0
        super().__init__([w.HBox([self._summary, self._stop_all],
                                 layout=w.Layout(align_items="center", gap="8px")), self._grid])
        self.add_class("runstop-dashboard")
        self.refresh()
        renderer().add(self)

    def __repr__(self) -> str:
        return "Dashboard()"

    def refresh(self) -> bool:
        """Add widgets for runs that appeared; update the summary line. Runs for as long as shown."""
        import time

        from ._api import runs

        now = time.monotonic()
        if now - self._last_sync < 1.0:
            return True
        self._last_sync = now
        all_runs = runs()
        ended = [r for r in all_runs if r.done]
        keep = {r.id for r in all_runs if not r.done} | {r.id for r in ended[-MAX_ENDED:]}
        shown = {wd.run.id for wd in self._widgets.values()}
        fresh = [r for r in all_runs if r.id in keep and r.id not in shown and r.id not in self._widgets]
        live = len(all_runs) - len(ended)
        hidden = len(all_runs) - len(keep)
        with ui_lock():
            for run in fresh:
                self._widgets[run.id] = RunWidget(run)
            for run_id in [i for i, wd in self._widgets.items() if i not in keep and wd.run.id not in keep]:
                self._widgets.pop(run_id).close()  # an old ended run makes room
            if fresh or hidden:
                self._grid.children = tuple(self._widgets.values())
            note = f"; {hidden} older ended runs not shown (runstop_nb.runs() lists them)" if hidden else ""
            self._summary.value = f"{len(all_runs)} runs, {live} live{note}"
            self._stop_all.disabled = live == 0
        return True

    def _on_stop_all(self, _button: Any = None) -> None:
        from ._api import stop_all

        with ui_lock():
            self._stop_all.disabled = True
            self._stop_all.description = "Stopping…"

        def work() -> None:
            try:
                stop_all()
            finally:
                with ui_lock():
                    self._stop_all.description = "Stop all"
                self._last_sync = 0.0

        threading.Thread(target=work, daemon=True, name="runstop-stop-all").start()


def dashboard(cols: int | None = None) -> Dashboard:
    """A live grid of every run in this kernel, with "Stop all". Display it in a cell."""
    return Dashboard(cols)
