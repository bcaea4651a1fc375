"""The run widget: one front-end model per run, its state synced, its presentation in the browser.

A run view is one anywidget model (plus the Layout every DOM widget has: two comm
models per run, whatever shows it). Its JavaScript and CSS ship in ``static/`` and are
the same for every view (``runstop.js`` renders runs, grids and tables). The kernel
sends *state* only when something changed: status, end, stop details, counters, the
bounded tail, agent cards, tree stats; the clock ticks in the browser from the start
time, and kernel loss is told by the per-kernel pulse (``_pulse``).

Updates come from the renderer thread (``_renderer``), marked by events: new output,
a change of status, new tree stats (``_treestats``), a click. Clicks arrive as custom
messages on the main thread; anything that may wait (a stop's grace, ``git diff``)
runs on a thread of its own. Widgets are written under ``ui_lock()`` only; nothing is
printed from a thread.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import anywidget
import traitlets as t

from . import _runstate as rs
from ._kernelstate import kernel_state
from ._pulse import pulse
from ._renderer import FRAME, renderer, ui_lock
from ._status import STATUSES
from ._treestats import stats_service
from ._viewset import current_cell, views

STATIC = Path(__file__).parent / "static"
WINDOW_LINES, WINDOW_CHARS, LINE_CHARS = rs.WINDOW_LINES, rs.WINDOW_CHARS, rs.LINE_CHARS
window = rs.window
MAX_FRAMES = 10  # output frames in any one second, per view (1 / FRAME)
FILES_EVERY = 10.0  # seconds between diffstats of a live worktree run with new output

# Colour plus text, never colour alone: the badge always spells the status out. The
# colours are the light theme's; the CSS maps each status to --jp-* colours.
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


class View(anywidget.AnyWidget):
    """What every runstop_nb view shares: the code, the pulse, where it is shown, closing."""

    _esm = (STATIC / "runstop.js").read_text()
    _css = (STATIC / "runstop.css").read_text()
    kind = t.Unicode("").tag(sync=True)
    pulse = t.Unicode("").tag(sync=True)  # the model id of this kernel's pulse

    def __init__(self, **kwargs: Any) -> None:
        self.shown_in: set[str] = set()
        with ui_lock():
            super().__init__(_anywidget_id="runstop_nb", pulse=pulse().model_id, **kwargs)
        self.on_msg(self._on_msg)
        views().add(self)

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[Any, Any], dict[Any, Any]] | None:
        """Displayed: remember the cell it is shown in (it is closed when that cell runs again)."""
        self.shown_in.add(current_cell())
        return super()._repr_mimebundle_(**kwargs)

    def mimebundle(self) -> dict[str, Any]:
        """The display data of this view (for display hooks that want a plain dict)."""
        shown = self._repr_mimebundle_()
        return {} if shown is None else dict(shown[0])

    @property
    def closed(self) -> bool:
        return self.comm is None

    def close(self) -> None:
        """Close the model and its Layout: the front end forgets both."""
        views().remove(self)
        with ui_lock():
            layout = self.layout
            super().close()
            layout.close()

    def reply(self, request: Any, **content: Any) -> None:
        """Answer a request of the browser (``req``), from any thread."""
        with ui_lock():
            if not self.closed:
                self.send({"reply": request, **content})

    def _on_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and isinstance(content.get("do"), str):
            self.handle(content["do"], content)

    def handle(self, action: str, content: dict[str, Any]) -> None:
        """A click or request from the browser (main thread)."""


def view_for(run: Any) -> RunWidget:
    """The run view of ``run``: the one already open, else a new one."""
    existing = views().of_run(run.id)
    if isinstance(existing, RunWidget) and not existing.closed:
        return existing
    return RunWidget(run)


def bundle(run: Any) -> dict[str, Any] | None:
    """A run's display: its run view inside a kernel (read-only unless ``run.live``); None
    elsewhere (terminal IPython), where its repr is used."""
    from IPython import get_ipython

    if getattr(get_ipython(), "kernel", None) is None:
        return None
    return view_for(run).mimebundle()


def install() -> None:
    """Runs and past runs display as widgets in a kernel (idempotent)."""
    kernel_state().hook("display", f"{__name__}:bundle")


def _mark_view_of(run_id: str) -> None:
    view = views().of_run(run_id)
    if view is not None:
        renderer().mark(view)


class RunWidget(View):
    """A live view of one run. ``RunWidget(None)`` shows "starting" until ``bind(run)``."""

    info = t.Dict().tag(sync=True)
    state = t.Dict().tag(sync=True)
    tail: t.List[Any] = t.List().tag(sync=True)
    stats = t.Unicode("").tag(sync=True)
    agent = t.Any(None).tag(sync=True)  # the agent's totals, or None
    cards: t.List[Any] = t.List().tag(sync=True)
    active = t.Float(allow_none=True, default_value=None).tag(sync=True)  # epoch s of the last output
    files = t.Any(None).tag(sync=True)  # diffstat rows of a worktree run, else None
    notice = t.Unicode("").tag(sync=True)  # a one-line error to show

    def __init__(self, run: Any = None, *, readonly: bool = False, height: str | None = None) -> None:
        super().__init__(kind="run", state={"status": "starting", "word": "starting", "done": False})
        self._readonly = readonly
        self._lock = threading.RLock()
        self._busy = False  # a stop started by this widget is under way
        self._unlisten: Any = None
        self._stats_text = ""
        self._frames: deque[float] = deque(maxlen=MAX_FRAMES)  # when the last output frames were sent
        self.run: Any = None
        if run is not None:
            self.bind(run)

    def __repr__(self) -> str:  # deterministic for nbval
        return f"RunWidget({getattr(self.run, 'name', None)!r})"

    # -- binding ------------------------------------------------------------------------------

    def failed_to_start(self, message: str) -> None:
        """The agent this widget was waiting for could not start."""
        with ui_lock(), self.hold_sync():
            self.state = {"status": "failed", "word": "failed", "done": True}
            self.notice = message

    def bind(self, run: Any) -> None:
        """Show ``run`` in this widget from now on (Rerun and Resume bind the new run)."""
        with self._lock:
            old = self.run
            if old is not None and old.id == run.id:
                self.run = run
                renderer().add(self)
                return
            self._forget_run()
            self.run = run
            replaced = views().claim(run.id, self)
            if replaced is not None and not replaced.shown_in:
                replaced.close()  # another view of this run that nothing shows any more
            self._sent_state: dict[str, Any] = {}
            self._version = -1
            self._output_at = 0.0
            self._frames.clear()
            self._counted: int | None = None
            self._files_at = 0.0
            self._files_version = -1
            self._agent_final = False  # the ended run's cards and totals were sent
            self._stats_text = ""
            self._unlisten = run.add_listener(lambda _run: renderer().mark(self))
            buffer = rs.attr(run, "buffer")
            if buffer is not None and rs.is_live(run):
                run_id = run.id
                buffer.on_change = lambda: _mark_view_of(run_id)
            if rs.is_live(run) and not run.done:
                stats_service().watch(self, run, self._on_tree_stats)
                if buffer is not None:
                    renderer().probe(self, lambda: int(buffer.version))
        with ui_lock(), self.hold_sync():
            self.info = {**rs.info(run), "readonly": self._readonly or not rs.is_live(run)}
            self.notice = ""
            self.stats = ""
            self.cards, self.agent, self.files, self.active = [], None, None, None
        renderer().add(self)

    def _forget_run(self) -> None:
        old = self.run
        if old is None:
            return
        views().release(old.id, self)
        stats_service().unwatch(self)
        renderer().unprobe(self)
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None

    def close(self) -> None:
        with self._lock:
            self._forget_run()
        renderer().discard(self)
        super().close()

    def _on_tree_stats(self, text: str) -> None:
        self._stats_text = text
        renderer().mark(self)

    # -- frames (renderer thread) -------------------------------------------------------------

    def refresh(self) -> bool:
        """Send what changed since the last frame; False once a finished run is fully shown.

        Output is sent at most once per FRAME: held-back output marks the view again."""
        run = self.run
        if run is None or self.closed:
            return run is None and not self.closed
        with self._lock:
            now = time.monotonic()
            version, status, done = run.buffer.version, run.status, run.done
            busy = status == "stopping" and (bool(rs.attr(run, "stop_in_progress", False)) or self._busy)
            if done and self._counted is None:
                self._counted = int(rs.attr(run, "lines", 0) or 0)
            new_state = rs.state(run, busy=busy, counted=self._counted)
            # At most MAX_FRAMES output frames in any second, the last one of a run included.
            room = len(self._frames) < MAX_FRAMES or now - self._frames[0] >= 1.0
            output_due = version != self._version and room and (done or now - self._output_at >= FRAME)
            fmt = rs.attr(run, "format", "text") or "text"
            agentic = fmt not in ("text", "auto")
            with ui_lock(), self.hold_sync():
                if output_due:
                    shown = run.buffer.lines(WINDOW_LINES + 1)
                    more = len(shown) > WINDOW_LINES or run.buffer.omitted > 0
                    self.tail = window(shown[-WINDOW_LINES:], more)
                    # An empty frame does not count against the rate: the first line shows at once.
                    self._version, self._output_at = version, (now if shown else 0.0)
                    if shown:
                        self._frames.append(now)
                    self.active = rs.activity(run, time.time())
                if agentic:
                    # The stream is parsed apart from the tail (the supervisor's tick, and to its end
                    # when the run finishes): a frame can show a line before its event is counted.
                    # Cards and totals follow the parse, and once more when the run has ended.
                    totals = rs.agent(rs.attr(run, "agent"))
                    if output_due or totals != self.agent or (done and not self._agent_final):
                        self.cards = rs.cards(rs.call(run, "cards", rs.CARD_WINDOW, default=()) or ())
                        self.agent, self._agent_final = totals, done
                moved = new_state != self._sent_state and (
                    new_state["status"] != self._sent_state.get("status") or self.info.get("pid") != run.pid)
                # --format auto is decided by the first events, while the status stays "running":
                # the browser shows cards or the raw stream by info's format, so resend it then.
                if moved or self.info.get("format") != fmt:
                    self.info = {**rs.info(run), "readonly": self._readonly or not rs.is_live(run)}
                if new_state != self._sent_state:
                    self.state = self._sent_state = new_state
                if self._stats_text and not done and self._stats_text != self.stats:
                    self.stats = self._stats_text
                self._update_files(run, done, version, now)
            if version != self._version:
                renderer().mark(self)  # output held back by the rate limit: come back next frame
            if done:
                renderer().unprobe(self)
            return not (done and version == self._version)

    def _update_files(self, run: Any, done: bool, version: int, now: float) -> None:
        """A worktree run's diffstat: on bind, at the end, and every FILES_EVERY s of new output."""
        if rs.attr(run, "worktree") is None:
            return
        due = self._files_at == 0.0 or (done and self._files_version != -2) or (
            version != self._files_version and now - self._files_at >= FILES_EVERY)
        if not due:
            return
        self._files_at, self._files_version = now, (-2 if done else version)
        self.files = rs.files(rs.call(run, "diffstat", default=[]) or [])

    # -- clicks and requests (main thread) ----------------------------------------------------

    def handle(self, action: str, content: dict[str, Any]) -> None:
        run = self.run
        if run is None:
            return
        if action == "stop":
            self._on_stop(run)
        elif action == "rerun":
            self._replace(run, "rerun", lambda: run.rerun())
        elif action == "resume":
            prompt = str(content.get("prompt") or "").strip()
            if prompt:
                self._replace(run, "resume", lambda: run.resume(prompt))
        elif action == "send":
            self._act(run, "send", lambda: run.send(str(content.get("text", "")) + "\n"))
        elif action == "interrupt":
            self._act(run, "Ctrl+C", run.interrupt)
        elif action == "card":
            text = rs.call(run, "card_text", str(content.get("id")))
            body = "(no longer kept: run.output() has the raw stream)" if text is None else str(text)
            self.reply(content.get("req"), text=rs.cut(body, rs.CARD_TEXT_CHARS, "this card"))
        elif action == "diff":
            threading.Thread(target=self._send_diff, args=(run, content.get("req")), daemon=True,
                             name=f"runstop-diff-{run.name}").start()
        elif action == "files":
            with self._lock:
                self._files_at = 0.0
            renderer().mark(self)

    def _send_diff(self, run: Any, request: Any) -> None:
        try:
            text = rs.cut(str(run.diff()), rs.DIFF_CHARS, "the diff")
        except Exception as e:
            text = f"diff failed: {type(e).__name__}: {e}"
        self.reply(request, text=text or "(no changes)")

    def _act(self, run: Any, what: str, fn: Any) -> None:
        try:
            fn()
        except Exception as e:
            self._notice(f"{what} failed: {_one_line(e)}")
            return
        if self.notice:
            self._notice("")

    def _notice(self, text: str) -> None:
        with ui_lock():
            self.notice = text

    def _on_stop(self, run: Any) -> None:
        if not rs.is_live(run) or self._readonly:
            return
        self._busy = True
        with ui_lock(), self.hold_sync():
            self.state = self._sent_state = {**self.state, "busy": True}
            self.notice = ""
        # The ladder may wait out the grace: never on the kernel's main thread.
        threading.Thread(target=self._stop_in_background, args=(run,), daemon=True,
                         name=f"runstop-click-{run.name}").start()

    def _stop_in_background(self, run: Any) -> None:
        try:
            result = run.stop()
            failed = None if result.stopped or result.reason == "already_terminal" else str(result)
        except Exception as e:  # a stop that raises must still give the button back
            failed = f"stop failed: {_one_line(e)}; retry"
        self._busy = False
        if failed:
            self._notice(failed)
        with self._lock:
            self._sent_state = {}
        renderer().add(self)

    def _replace(self, run: Any, what: str, start: Any) -> None:
        """Rerun / Resume: start the new run, then show it here."""
        try:
            new = start()
        except Exception as e:
            self._notice(f"{what} failed: {_one_line(e)}")
            return
        self.bind(new)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")
