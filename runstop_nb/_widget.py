"""The run widget: header, live output tail, Stop and Rerun buttons.

Streaming design. The output area is an ``ipywidgets.Output`` whose ``outputs`` are
*replaced* with the run's current tail window, at most once per frame (10 Hz), and only
when the tail changed. Each update is bounded (``WINDOW_LINES`` lines, ``WINDOW_CHARS``
characters), so a run of any length costs the browser at most ~10 bounded messages per
second; ``append_stdout`` per line would be O(n²) (docs/platform.md). Output is never captured
(``with out:``) and never printed from a thread: both land in the wrong cell.

The front end renders ANSI colours in stream outputs and shows stderr distinctly; lines
arrive already cleaned (``\\r`` collapsed, cursor codes dropped) by ``_terminal``.
The scroll box is ``column-reverse`` so it stays pinned to the newest line with no JS.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import ipywidgets as w

from ._kernelstate import kernel_state
from ._renderer import FRAME, renderer, ui_lock
from ._status import STATUSES
from ._treestats import TreeSampler
from ._units import clock, plural, size

WINDOW_LINES = 200
WINDOW_CHARS = 40_000  # ~48 KiB of JSON with escapes: under the 64 KiB per-update budget
LINE_CHARS = 2_000
STATS_EVERY = 1.0  # seconds

# Colour plus text, never colour alone: the badge always spells the status out.
BADGES = {
    "running": ("#1a7f37", "running"),
    "stopping": ("#9a6700", "stopping"),
    "completed": ("#0969da", "completed"),
    "failed": ("#cf222e", "failed"),
    "cancelled": ("#57606a", "cancelled"),
    "timed_out": ("#8250df", "timed out"),
    "lost": ("#6e7781", "lost"),  # history only: its kernel and its processes are gone
    "orphaned": ("#bc4c00", "orphaned"),  # history only: its kernel is gone, processes are not
}


assert set(BADGES) == set(STATUSES), "every status needs a badge"


def bundle(run: Any) -> dict[str, Any] | None:
    """A run's display: its widget inside a kernel (read-only for a past run, which has no
    ``stop``); None elsewhere, where its repr is used."""
    from IPython import get_ipython

    if getattr(get_ipython(), "kernel", None) is None:
        return None
    data: dict[str, Any] = RunWidget(run, readonly=not hasattr(run, "stop"))._repr_mimebundle_()
    return data


def install() -> None:
    """Runs and past runs display as widgets in a kernel (idempotent)."""
    kernel_state().hook("display", f"{__name__}:bundle")


def window(lines: list[tuple[str, str]], more: bool = False) -> tuple[dict[str, str], ...]:
    """Stream outputs for the newest lines, within the character budget, merged by stream.

    ``more``: the run wrote more than ``lines`` holds, so a first line says where it is.
    (No line count here: counting a flood's log at 10 Hz would starve the kernel.)"""
    keep: list[tuple[str, str]] = []
    used = 0
    for stream, text in reversed(lines):
        if len(text) > LINE_CHARS:
            text = text[:LINE_CHARS] + "\x1b[0m …"
        used += len(text) + 1
        if used > WINDOW_CHARS and keep:
            break
        keep.append((stream, text))
    keep.reverse()
    if more or len(keep) < len(lines):
        keep.insert(0, ("stdout", "\x1b[2m… earlier output not shown: run.output() has it all\x1b[0m"))
    outputs: list[dict[str, str]] = []
    for stream, text in keep:
        if outputs and outputs[-1]["name"] == stream:
            outputs[-1]["text"] += text + "\n"
        else:
            outputs.append({"output_type": "stream", "name": stream, "text": text + "\n"})
    return tuple(outputs)


def _label(cls: str, **kw: Any) -> w.Label:
    label = w.Label(**kw)
    label.add_class(cls)
    return label


class RunWidget(w.VBox):  # type: ignore[misc]
    """A live view of one run. Bind it to another run with ``bind(run)`` (Rerun does)."""

    def __init__(self, run: Any, *, height: str = "260px", readonly: bool = False) -> None:
        self._readonly = readonly
        self._name = _label("runstop-name", style={"font_weight": "bold"})
        self._pid = _label("runstop-pid")
        self._status = _label("runstop-status", style={"text_color": "white", "font_weight": "bold"},
                              layout=w.Layout(padding="0 8px", border_radius="8px"))
        self._elapsed = _label("runstop-elapsed")
        self._exit = _label("runstop-exit")
        self._stats = _label("runstop-stats", style={"text_color": "#57606a"})
        self._stop = w.Button(description="Stop", button_style="danger", icon="stop",
                              layout=w.Layout(width="auto"), tooltip="Stop the whole process tree")
        self._stop.add_class("runstop-stop")
        self._rerun = w.Button(description="Rerun", icon="redo", layout=w.Layout(width="auto", display="none"),
                               tooltip="Start the same command as a new run")
        self._rerun.add_class("runstop-rerun")
        self._error = w.HTML(layout=w.Layout(display="none"))
        self._error.add_class("runstop-error")
        self._out = w.Output()
        self._out.add_class("runstop-output")
        scroll = w.Box([self._out], layout=w.Layout(
            height=height, overflow="auto", display="flex", flex_flow="column-reverse",
            border="1px solid #d0d7de", border_radius="4px"))
        header = w.HBox(
            [self._name, self._pid, self._status, self._elapsed, self._exit,
             w.HBox(layout=w.Layout(flex="1")), self._stop, self._rerun],
            layout=w.Layout(align_items="center", flex_flow="row wrap", gap="6px"))
        super().__init__([header, self._stats, self._error, scroll],
                         layout=w.Layout(padding="6px", border="1px solid #d0d7de", min_width="0"))
        self.add_class("runstop-run")
        self._stop.on_click(self._on_stop)
        self._rerun.on_click(self._on_rerun)
        self._lock = threading.Lock()
        self._busy = False  # a stop started by this widget's button is under way
        self.run: Any = None
        if run is None:  # shown at once; bound when its agent has started
            self._status.value = "starting"
            self._status.style.background = "#57606a"
            self._stop.disabled = True
        else:
            self.bind(run)

    def __repr__(self) -> str:  # deterministic for nbval
        return f"RunWidget({getattr(self.run, 'name', None)!r})"

    def failed_to_start(self, message: str) -> None:
        """The agent this widget was waiting for could not start."""
        with ui_lock():
            self._status.value = "failed"
            self._status.style.background = BADGES["failed"][0]
            self._stop.layout.display = "none"
            self._show_error(message)

    def bind(self, run: Any) -> None:
        """Show ``run`` in this widget from now on."""
        with self._lock:
            self.run = run
            self._shown: tuple[Any, ...] = ()
            self._version = -1
            self._sampler = TreeSampler()
            self._next_stats = 0.0
            self._quick: tuple[Any, ...] | None = None
            self._output_at = 0.0
            self._final_stats = False
        run.buffer.on_change = renderer().poke
        with ui_lock():
            self._name.value = run.name
            self._error.layout.display = "none"
        if self.refresh():
            renderer().add(self)

    # -- frames (renderer thread) -------------------------------------------------------

    def refresh(self) -> bool:
        """Repaint what changed since the last frame; False once a finished run is fully shown.

        Called for every shown widget at each frame, so the no-change case is a handful of
        attribute reads. Output is repainted at most once per FRAME, whatever pokes us.
        """
        run = self.run
        now = time.monotonic()
        version, status, done = run.buffer.version, run.status, run.done
        busy = status == "stopping" and (run.stop_in_progress or self._busy)
        quick = (version, status, done, int(run.elapsed), busy)
        if quick == self._quick and now < self._next_stats:
            return True
        with self._lock:
            stats = None
            if done and not self._final_stats:
                self._final_stats = True
                stats = f"{plural(run.lines, 'line')} · {size(run.bytes)} logged"
            elif not done and now >= self._next_stats:
                self._next_stats = now + STATS_EVERY
                stats = str(self._sampler.sample(run.members()))  # psutil processes
            header = (status, clock(run.elapsed), run.pid, run.returncode if done else None, busy)
            output_due = version != self._version and (done or now - self._output_at >= FRAME)
            with ui_lock():
                if output_due:
                    shown = run.buffer.lines(WINDOW_LINES + 1)
                    more = len(shown) > WINDOW_LINES or run.buffer.omitted > 0
                    self._out.outputs = window(shown[-WINDOW_LINES:], more)
                    # An empty frame does not count against the rate: the first line shows at once.
                    self._version, self._output_at = version, (now if shown else 0.0)
                if header != self._shown:
                    self._paint_header(run, status, done, header)
                    self._shown = header
                if stats is not None and stats != self._stats.value:
                    self._stats.value = stats
            # Output held back by the rate limit must bring us back: no fast path until then.
            self._quick = quick if version == self._version else None
            if done:
                self._next_stats = 0.0  # a finished run: no more sampling
            return not (done and version == self._version)

    def _paint_header(self, run: Any, status: str, done: bool, header: tuple[Any, ...]) -> None:
        colour, word = BADGES.get(status, ("#57606a", status))
        self._status.value = word
        self._status.style.background = colour
        self._elapsed.value = header[1]
        self._pid.value = f"pid {run.pid}" if run.pid else ""
        code = run.returncode
        # The exit code means something for a natural end; a stop's -15/-9 is our own doing.
        self._exit.value = f"exit {code}" if done and status in ("completed", "failed") and code is not None else ""
        if header[4]:
            self._stop.description, self._stop.disabled = "Stopping…", True
        elif not done and not self._busy:
            # Also after a failed stop (status still "stopping"): the user may retry.
            self._stop.description, self._stop.disabled = "Stop", False
        self._stop.layout.display = "none" if done or self._readonly else None
        self._rerun.layout.display = None if done else "none"
        if run.error:
            self._show_error(run.error)

    def _show_error(self, text: str) -> None:
        from html import escape

        self._error.value = f'<span style="color:#cf222e">⚠ {escape(text)}</span>'
        self._error.layout.display = None

    # -- clicks (main thread) ----------------------------------------------------------------

    def _on_stop(self, _button: Any = None) -> None:
        run = self.run
        if run is None:
            return
        self._busy = True
        with ui_lock():
            self._stop.description, self._stop.disabled = "Stopping…", True
            self._error.layout.display = "none"
        # The ladder may wait out the grace: never on the kernel's main thread.
        threading.Thread(target=self._stop_in_background, args=(run,), daemon=True,
                         name=f"runstop-click-{run.name}").start()

    def _stop_in_background(self, run: Any) -> None:
        try:
            result = run.stop()
            failed = None if result.stopped or result.reason == "already_terminal" else str(result)
        except Exception as e:  # a stop that raises must still give the button back
            failed = f"stop failed: {type(e).__name__}: {e}; retry"
        self._busy = False
        if failed:
            with ui_lock():
                self._show_error(failed)
                self._stop.description, self._stop.disabled = "Stop", False
                self._shown = ()
        renderer().add(self)

    def _on_rerun(self, _button: Any = None) -> None:
        if self.run is None:
            return
        try:
            new = self.run.rerun()
        except Exception as e:
            with ui_lock():
                self._show_error(f"rerun failed: {e}")
            return
        self.bind(new)
