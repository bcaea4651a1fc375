"""A compact table of runs, one line each: as text (terminals, nbval), HTML, and the live table.

``%agent_ls`` and the dashboard show the same columns: name, status, elapsed, lines,
command, exit (with why a run was stopped), sorted by start. Paths are said short (the
log folder relative to the run's folder), never as absolute paths. In a kernel, a
``RunTable`` displays as the live table (``Board``: one model, a Stop per row, a filter by
status, one run opened below it at a time); its ``text/plain`` stays the aligned text
table, so nbval and terminals read the same thing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from html import escape
from typing import Any

import traitlets as t

from . import _runstate as rs
from ._kernelstate import kernel_state
from ._renderer import renderer, ui_lock
from ._units import clock, size
from ._viewset import views
from ._widget import RunWidget, View, view_for

COLUMNS = ("name", "status", "elapsed", "lines", "exit", "command", "log")
COMMAND_CHARS = 80
MAX_ENDED = 24  # ended runs the dashboard shows (newest); live runs are always shown
EVERY = 0.5  # seconds between two updates of a table
COUNT_BELOW = 10_000_000  # a live run's lines are counted only while its logs are smaller (a flood's are not)


def _short(text: str, limit: int = COMMAND_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def lines_of(run: Any) -> int | None:
    """The run's line count when it is cheap to know: ended, or a live run with small logs."""
    if rs.attr(run, "done", False) or int(rs.attr(run, "bytes", 0) or 0) < COUNT_BELOW:
        return int(rs.attr(run, "lines", 0) or 0)
    return None


def row(run: Any) -> dict[str, Any]:
    """One run as a row of the live table (JSON-able; the browser ticks ``elapsed``)."""
    done = bool(rs.attr(run, "done", False))
    stop = rs.stop_details(run) if done else None
    exit_ = rs.exit_text(run)
    if stop is not None and stop["reason"] == "stopped" and not exit_:
        exit_ = stop["headline"] + (" (SIGKILL)" if stop["escalated"] else "")
    lines = lines_of(run)
    cwd = str(rs.attr(run, "cwd", "") or "")
    status = str(rs.attr(run, "status", ""))
    return {
        "id": rs.attr(run, "id", ""), "name": rs.attr(run, "name", ""), "status": status,
        "word": rs.WORDS.get(status, status), "done": done, "live": rs.is_live(run),
        "busy": status == "stopping",
        "started": rs.epoch_ms(rs.attr(run, "started_at")), "ended": rs.epoch_ms(rs.attr(run, "ended_at")),
        "elapsed": round(float(rs.attr(run, "elapsed", 0.0) or 0.0), 1) if done else None,
        "lines": lines, "bytes": size(int(rs.attr(run, "bytes", 0) or 0)) if lines is None else None,
        "exit": exit_, "command": _short(rs.command_of(run), 200), "cwd": rs.short_path(cwd) if cwd else "",
        "log": rs.short_path(rs.attr(run, "log_dir", ""), cwd or None),
    }


def text_row(run: Any) -> tuple[str, ...]:
    r = row(run)
    lines = f"{r['lines']:,}" if r["lines"] is not None else str(r["bytes"])
    return (r["name"], r["status"], clock(rs.attr(run, "elapsed", 0.0)), lines, r["exit"],
            _short(r["command"]), r["log"])


def by_start(runs: Sequence[Any]) -> list[Any]:
    return sorted(runs, key=lambda r: (rs.epoch_ms(rs.attr(r, "started_at")) or 0, str(rs.attr(r, "id", ""))))


class RunTable:
    """Runs sorted by start; ``str()`` is an aligned text table, ``_repr_html_`` an HTML one,
    and in a kernel it displays as the live table (Stop per row, filter by status)."""

    def __init__(self, runs: Sequence[Any]) -> None:
        self.runs = by_start(runs)
        self.rows = [text_row(r) for r in self.runs]

    def __str__(self) -> str:
        if not self.rows:
            return "no runs in this kernel"
        widths = [max(len(c), *(len(r[i]) for r in self.rows)) for i, c in enumerate(COLUMNS)]
        lines = ["  ".join(c.ljust(wd) for c, wd in zip(COLUMNS, widths, strict=True)).rstrip()]
        lines += ["  ".join(v.ljust(wd) for v, wd in zip(r, widths, strict=True)).rstrip() for r in self.rows]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        if not self.rows:
            return "<i>no runs in this kernel</i>"
        head = "".join(f"<th>{c}</th>" for c in COLUMNS)
        body = "".join(
            f"<tr data-status='{escape(run.status)}'>"
            + "".join(f"<td><code>{escape(v)}</code></td>" for v in r) + "</tr>"
            for run, r in zip(self.runs, self.rows, strict=True))
        return f"<table class='runstop-table'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def _repr_mimebundle_(self, include: object = None, exclude: object = None) -> dict[str, Any]:
        data: dict[str, Any] = {"text/plain": str(self), "text/html": self._repr_html_()}
        try:
            from IPython import get_ipython

            in_kernel = getattr(get_ipython(), "kernel", None) is not None
        except Exception:
            in_kernel = False
        if in_kernel and self.runs:
            board = Board(runs=self.runs)
            data.update(board.mimebundle())
            data["text/plain"] = str(self)
        return data


class Board(View):
    """The live table of runs: ``runs`` fixed (``%agent_ls``), or None for every run of this
    kernel, new ones included (the dashboard). Clicking a name opens that run's view below."""

    rows: t.List[Any] = t.List().tag(sync=True)
    hidden = t.Int(0).tag(sync=True)  # older ended runs left out
    detail = t.Unicode("").tag(sync=True)  # the model id of the run view opened below the table
    follow = t.Bool(False).tag(sync=True)

    def __init__(self, runs: Sequence[Any] | None = None) -> None:
        super().__init__(kind="board", follow=runs is None)
        self._fixed = None if runs is None else list(runs)
        self._unlisten: dict[str, Any] = {}
        self._last = 0.0
        self._opened: RunWidget | None = None
        self._owns_opened = False
        if runs is None:
            kernel_state().hook("new_run", f"{__name__}:on_new_run")
        self.refresh()
        renderer().add(self)

    def __repr__(self) -> str:
        return "Dashboard()" if self._fixed is None else f"Board({len(self._fixed)} runs)"

    def runs(self) -> list[Any]:
        if self._fixed is not None:
            return list(self._fixed)
        from ._api import runs

        return runs()

    def refresh(self) -> bool:
        """Rebuild the rows (at most every EVERY seconds); send them if they changed."""
        if self.closed:
            return False
        now = time.monotonic()
        if now - self._last < EVERY:
            renderer().mark(self)
            return True
        self._last = now
        all_runs = self.runs()
        ended = [r for r in all_runs if rs.attr(r, "done", False)]
        keep = all_runs if self._fixed is not None else [
            r for r in all_runs if not rs.attr(r, "done", False) or r in ended[-MAX_ENDED:]]
        for run in keep:
            if run.id not in self._unlisten:
                self._unlisten[run.id] = run.add_listener(lambda _run: renderer().mark(self))
        rows = [row(r) for r in by_start(keep)]
        with ui_lock(), self.hold_sync():
            if rows != self.rows:
                self.rows = rows
            if len(all_runs) - len(keep) != self.hidden:
                self.hidden = len(all_runs) - len(keep)
        return True

    def close(self) -> None:
        for unlisten in self._unlisten.values():
            unlisten()
        self._unlisten.clear()
        renderer().discard(self)
        self._open(None)
        super().close()

    def handle(self, action: str, content: dict[str, Any]) -> None:
        by_id = {r.id: r for r in self.runs()}
        run = by_id.get(str(content.get("id")))
        if action == "stop" and run is not None:
            self._stop([run])
        elif action == "stop_all":
            self._stop([r for r in by_id.values() if not rs.attr(r, "done", False) and rs.is_live(r)])
        elif action == "open":
            self._open(run)

    def _stop(self, targets: list[Any]) -> None:
        def work() -> None:
            for thread in [threading.Thread(target=_stop_quietly, args=(r,), daemon=True) for r in targets]:
                thread.start()
            renderer().mark(self)

        threading.Thread(target=work, daemon=True, name="runstop-board-stop").start()

    def _open(self, run: Any) -> None:
        """Show ``run``'s view below the table (one at a time); None closes it."""
        old, owned = self._opened, self._owns_opened
        self._opened, self._owns_opened = None, False
        if old is not None:
            old.shown_in -= self.shown_in
            if owned and not old.shown_in and not old.closed:
                old.close()
        if run is not None:
            owned = views().of_run(run.id) is None
            view = view_for(run)
            view.shown_in |= self.shown_in
            self._opened, self._owns_opened = view, owned
        with ui_lock():
            if not self.closed:
                self.detail = "" if self._opened is None else self._opened.model_id


def _stop_quietly(run: Any) -> None:
    try:
        run.stop()
    except Exception:
        pass  # the row shows the run's status; a failed stop leaves it "stopping"


def on_new_run(_run: Any) -> None:
    """A run started: dashboards show it within a frame."""
    for view in views().views():
        if isinstance(view, Board) and view.follow:
            renderer().mark(view)
