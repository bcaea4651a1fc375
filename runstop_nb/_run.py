"""A run: one agent's process tree, its status, and its logs.

A run knows nothing of widgets or history. It announces every status change to its
listeners (the recorder and the UI subscribe), displays itself through the kernel
state's ``display`` hook (the UI registers it), and is re-run through the function that
started it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from ._kernelstate import kernel_state
from ._lifecycle import Event, next_status
from ._logs import LineCounter, LiveTail, LogFiles, TailBuffer
from ._proc.ladder import Verdict
from ._results import StopResult, Survivor
from ._spec import RunSpec, check_seconds
from ._status import RunStatus, StopCause, StopReason
from ._units import clock

if TYPE_CHECKING:
    from ._launcher import Agent
    from ._supervisor import Supervisor

log = logging.getLogger("runstop_nb")
WATCH_EVERY = 0.25  # seconds between checks on a tree that survived SIGKILL
ENDED_TAIL_LINES = 200  # display lines kept in memory once a run has ended
FIRST_OUTPUT_WINDOW = 3.0  # seconds a new run's logs are polled every 10 ms, until it writes


@dataclass(frozen=True)
class RunState:
    """A consistent snapshot of a run's changing fields (status and exit move together)."""

    status: str
    returncode: int | None
    ended_at: datetime | None
    pid: int | None
    error: str | None
    last_stop: StopResult | None
    containment: str
    cgroup: str | None


class Run:
    """One agent started by :func:`runstop_nb.start`.

    ``status`` is one of running, stopping, completed, failed, cancelled, timed_out.
    ``returncode`` is None while the root runs (and if it was never known, e.g. its guard
    died); negative values are signals, as in :mod:`subprocess`. ``containment`` says what
    holds its tree: ``cgroup``, ``guard`` or ``none``.
    """

    def __init__(self, spec: RunSpec, name: str, logs: LogFiles, supervisor: Supervisor,
                 key: str | None = None, restart: Callable[..., Run] | None = None) -> None:
        self.spec = spec
        self.id = spec.id
        self.name = name
        self.argv = list(spec.argv)
        self.cwd = spec.cwd
        self.grace = spec.grace
        self.timeout = spec.timeout
        self.key = key
        self.log_dir: Path = logs.dir
        self.pid: int | None = None
        self.returncode: int | None = None
        self.containment = "none"
        self.cgroup: str | None = None  # the run's cgroup folder, when it has one
        self.started_at = datetime.now(timezone.utc)
        self.ended_at: datetime | None = None
        self.error: str | None = None  # why a run ended abnormally, e.g. its guard died
        self.last_stop: StopResult | None = None
        self.buffer = TailBuffer()
        self._logs = logs
        self._supervisor = supervisor
        self._restart = restart
        self._status = RunStatus.RUNNING
        self._stop_cause: StopCause = "user"
        self._stop_note: str | None = None
        self._agent: Agent | None = None
        self._tail: LiveTail | None = None
        self._t0 = time.monotonic()
        self._t_end: float | None = None
        self._deadline = self._t0 + spec.timeout if spec.timeout else None
        self._state_lock = threading.RLock()
        self._stop_lock = threading.Lock()
        self._tail_lock = threading.Lock()
        self._done = threading.Event()
        self._ending = False  # a natural-end cleanup was dispatched
        self._watching = False
        self._final_bytes = 0
        self._counter = LineCounter(logs)
        self._listeners: list[Callable[[Run], None]] = []

    # -- wiring (called by start()) --------------------------------------------------

    def attach(self, agent: Agent) -> None:
        """Bind the started agent; begin tailing its logs. Called once, by ``start()``."""
        self._agent = agent
        self.pid = agent.pid
        self.containment = agent.containment
        self.cgroup = getattr(agent, "cgroup", None)
        self._tail = LiveTail(self._logs, self.buffer)
        self._supervisor.add_ticker(self, self._tick)
        self._supervisor.hurry(self, FIRST_OUTPUT_WINDOW)  # show the first line within ~10 ms
        self.on_agent_event()  # it may have ended already

    # -- public surface ---------------------------------------------------------------

    @property
    def status(self) -> str:
        return self._status.value

    @property
    def done(self) -> bool:
        """True once the run is terminal and its whole tree is verified dead."""
        return self._done.is_set()

    @property
    def stop_in_progress(self) -> bool:
        """True while a stop ladder is running for this run (a click must not start another)."""
        return self._stop_lock.locked()

    @property
    def elapsed(self) -> float:
        """Seconds since start, frozen at the end."""
        return (self._t_end or time.monotonic()) - self._t0

    @property
    def lines(self) -> int:
        """Lines the agent wrote so far (stdout plus stderr), counted from the log on demand."""
        return self._counter.count()

    @property
    def bytes(self) -> int:
        """Bytes the agent wrote so far (stdout plus stderr), as of the last tail tick."""
        tail = self._tail
        return tail.bytes if tail is not None and not tail.closed else self._final_bytes

    def state(self) -> RunState:
        """The changing fields, read together."""
        with self._state_lock:
            return RunState(self.status, self.returncode, self.ended_at, self.pid, self.error,
                            self.last_stop, self.containment, self.cgroup)

    def stop(self, grace: float | None = None) -> StopResult:
        """Stop the whole process tree: SIGTERM, ``grace`` seconds, then SIGKILL, verified.

        Blocks for at most about grace + 1 s. Idempotent: a terminal run returns
        ``reason="already_terminal"`` and nothing is signalled. If something survives
        SIGKILL (D state), the result lists it and the run stays ``stopping`` while a
        background thread keeps watching; call stop() again to retry.
        """
        return self.stop_for("user", grace)

    def stop_for(self, cause: StopCause, grace: float | None = None, note: str | None = None) -> StopResult:
        """Stop as ``stop()`` does, recording why (``cause``) and what to say (``note``):
        the budget, a ``runstop stop`` request, ``--restart``."""
        g = check_seconds("grace", grace)
        return self._stop(cause, self.grace if g is None else g, note)

    def wait(self, timeout: float | None = None) -> str:
        """Block until the run ends or ``timeout`` seconds pass; return the status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._done.is_set():
            left = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
            if left <= 0:
                break
            self._done.wait(left)  # short slices keep Ctrl+C / kernel interrupt responsive
        return self.status

    async def wait_async(self, timeout: float | None = None) -> str:
        """Await the end of the run without blocking the event loop; return the status.

        In a notebook, ``await run.wait_async()`` keeps widget buttons live while the
        cell waits (ipykernel >= 7.4 handles clicks during an await).
        """
        import anyio

        with anyio.move_on_after(timeout):
            while not self._done.is_set():
                await anyio.sleep(0.05)
        return self.status

    def output(self, stream: str = "both") -> str:
        """Everything the agent wrote so far, from the log (``stream``: both, stdout, stderr)."""
        return self._logs.output(stream)

    def tail(self, n: int = 50) -> str:
        """The last ``n`` lines of output, from the log."""
        return self._logs.tail(n)

    def rerun(self) -> Run:
        """Start the same command again, as a new run (same name once this one has ended)."""
        if self._restart is None:
            raise RuntimeError("this run was not started by runstop_nb.start(); start it again yourself")
        spec = self.spec
        return self._restart(
            spec.command if spec.shell else list(spec.command),
            name=self.name if self.done else None,
            cwd=spec.cwd, env=dict(spec.env_overrides), timeout=spec.timeout, grace=spec.grace,
            shell=spec.shell, key=self.key,
        )

    def add_listener(self, fn: Callable[[Run], None]) -> Callable[[], None]:
        """Call ``fn(run)`` on every status change, from any thread; return an unsubscribe.

        A listener that raises is logged and never affects the run.
        """
        with self._state_lock:
            self._listeners.append(fn)

        def remove() -> None:
            with self._state_lock:
                if fn in self._listeners:
                    self._listeners.remove(fn)

        return remove

    def member_pids(self) -> list[int]:
        """Pids of the tree's live processes (empty once ended)."""
        agent = self._agent
        return [] if agent is None or self.done else agent.members()

    def members(self) -> list[psutil.Process]:
        """The live processes of the tree, as psutil.Process objects (empty once ended)."""
        out = []
        for pid in self.member_pids():
            try:
                out.append(psutil.Process(pid))
            except psutil.Error:
                continue
        return out

    def _repr_mimebundle_(self, include: object = None, exclude: object = None) -> dict[str, Any]:
        """In a notebook, a Run displays as its live widget; elsewhere as its repr."""
        for bundle in kernel_state().fire("display", self):
            if bundle:
                return dict(bundle)
        return {"text/plain": repr(self)}

    def __repr__(self) -> str:
        extra = f" exit={self.returncode}" if self.done and self.returncode is not None else ""
        return f"<Run {self.name!r} {self.status} pid={self.pid}{extra} {clock(self.elapsed)}>"

    # -- internals ------------------------------------------------------------------------

    def _emit(self) -> None:
        with self._state_lock:
            listeners = list(self._listeners)
        for fn in listeners:
            try:
                fn(self)
            except Exception:
                log.exception("runstop_nb: a listener of run %r raised; ignored", self.name)

    def _move(self, event: Event) -> None:
        with self._state_lock:
            self._status = next_status(self._status, event)

    def _spawn(self, target: Callable[[], object], what: str) -> None:
        threading.Thread(target=target, name=f"runstop-{what}-{self.name}", daemon=True).start()

    def _tick(self) -> None:
        """Supervisor thread, ~10 Hz: read new output; fire the timeout."""
        with self._tail_lock:
            if self._tail is not None and not self._tail.closed and self._tail.poll():
                self._supervisor.relax(self)
        if (self._deadline is not None and self._status == RunStatus.RUNNING and not self._ending
                and time.monotonic() >= self._deadline):
            self._deadline = None
            self._spawn(lambda: self._stop("timeout", self.grace, None), "timeout")

    def on_agent_event(self) -> None:
        """The agent's root exited, its tree ended, or its guard died (supervisor thread)."""
        agent = self._agent
        if agent is None or self._ending or self.done:
            return
        if agent.returncode is not None or agent.ended() is not None or agent.lost_reason():
            self._ending = True
            self._spawn(self._end_naturally, "end")

    def _end_naturally(self) -> None:
        """The root exited (or its guard died): see the tree dead, then end the run.

        No lock is held while the backend settles the leftovers (up to the grace), so a
        user's stop() meanwhile takes the run over: it ends ``cancelled``, with the stop
        result of the very ladder that was already under way."""
        agent = self._agent
        assert agent is not None
        mine = False  # this thread moved the run to stopping (its guard died)
        lost = agent.lost_reason()
        if lost:
            with self._stop_lock:
                if self._status == RunStatus.RUNNING:
                    self._stop_cause, mine = "guard_lost", True
                    self._move(Event.STOP)
            if mine:
                self._emit()  # outside the lock: a listener may call stop() itself
        t0 = time.monotonic()
        verdict = agent.settle(self.grace)  # the run owns its tree: leftovers die with the root
        with self._stop_lock:
            lost = lost or agent.lost_reason()
            if lost and self._status == RunStatus.RUNNING:
                self._stop_cause, mine = "guard_lost", True
                self._move(Event.STOP)
            if self._status.terminal or (self._status == RunStatus.STOPPING and not mine):
                return  # a stop() took the run over; it ends it
            if lost:
                how = "verified dead" if verdict.dead else "NOT all dead"
                self.error = f"{lost}; its tree was stopped ({how}, by {verdict.verified_by})"
                event = Event.STOPPED
            else:
                event = Event.EXITED_OK if agent.returncode == 0 else Event.EXITED_ERROR
            if lost or verdict.signalled:
                self.last_stop = self._result_of(verdict, RunStatus.RUNNING, t0,
                                                 cause="guard_lost" if lost else "exit")
            if not verdict.dead:
                self._watch_until_dead(event)
                return
            self._finish(event)
        self._announce()

    def _stop(self, cause: StopCause, grace: float, note: str | None) -> StopResult:
        t0 = time.monotonic()
        with self._stop_lock, self._state_lock:
            prior = self._status
            if prior.terminal:
                return self._result(False, "already_terminal", prior, t0)
            if prior == RunStatus.RUNNING:
                self._move(Event.TIMEOUT if cause == "timeout" else Event.STOP)
                self._stop_cause, self._stop_note = cause, note
            else:
                self._move(Event.RETRY_STOP)
        # Emit "stopping" outside the lock: a listener that calls stop() (or stop_all())
        # must not deadlock on it; if it does, its stop does the work and we report that.
        # A retry is no change of status, so it is not emitted (nor re-entered by listeners).
        if prior == RunStatus.RUNNING:
            self._emit()
        with self._stop_lock:
            if self._status.terminal:
                return self.last_stop or self._result(False, "already_terminal", prior, t0)
            agent = self._agent
            assert agent is not None
            try:
                verdict = agent.terminate(grace)
            except Exception as e:
                log.exception("runstop_nb: stopping %r failed", self.name)
                result = self._result(False, "error", prior, t0, error=f"{type(e).__name__}: {e}")
            else:
                end = Event.TIMED_OUT if self._stop_cause == "timeout" else Event.STOPPED
                if verdict.dead:
                    self._finish(end)
                else:
                    self._watch_until_dead(end)
                result = self._result_of(verdict, prior, t0, cause=self._stop_cause)
            self.last_stop = result
        if result.stopped:
            self._announce()
        else:
            self._emit()
        return result

    def _result_of(self, verdict: Verdict, prior: RunStatus, t0: float, *, cause: StopCause) -> StopResult:
        note = "; ".join(n for n in (self._stop_note if cause == self._stop_cause else None, verdict.note) if n)
        reason: StopReason = "stopped" if verdict.dead else "unkillable"
        return self._result(
            verdict.dead, reason, prior, t0, escalated=verdict.escalated,
            unkillable=tuple(Survivor(p, s, n) for p, s, n in verdict.survivors), signalled=verdict.signalled,
            swept=verdict.swept, verified_by=verdict.verified_by, cause=cause, note=note or None,
        )

    def _result(self, stopped: bool, reason: StopReason, prior: RunStatus, t0: float, **kw: Any) -> StopResult:
        return StopResult(
            run_id=self.id, name=self.name, stopped=stopped, reason=reason,
            prior_status=prior.value, status=self.status,
            elapsed_s=time.monotonic() - t0, **kw,
        )

    def _watch_until_dead(self, event: Event) -> None:
        """Keep checking a tree that survived SIGKILL; end the run when it is finally dead."""
        if self._watching:
            return
        self._watching = True

        def watch() -> None:
            agent = self._agent
            assert agent is not None
            while not self.done:
                time.sleep(WATCH_EVERY)
                if not agent.members():
                    with self._stop_lock:
                        self._finish(event)
                        if self.last_stop is not None and not self.last_stop.stopped:
                            self.error = self.error or "processes that survived SIGKILL died later"
                    self._announce()
            self._watching = False

        self._spawn(watch, "watch")

    def _finish(self, event: Event) -> None:
        """The tree is verified dead: release the guard, read the logs to the end, then
        turn terminal, so a terminal status means nothing of the run is left, guard included.
        Callers hold ``_stop_lock``."""
        agent = self._agent
        with self._state_lock:
            if self._status.terminal:
                return
            final = next_status(self._status, event)  # an illegal move raises before any effect
        if agent is not None:
            agent.release()
        with self._tail_lock:
            if self._tail is not None:
                self._tail.close()
                self._final_bytes = self._tail.bytes
        self.buffer.shrink(ENDED_TAIL_LINES)
        self._supervisor.remove_ticker(self)
        with self._state_lock:
            self._status = final
            self.returncode = agent.returncode if agent is not None else None
            self.ended_at = datetime.now(timezone.utc)
            self._t_end = time.monotonic()

    def _announce(self) -> None:
        """After _finish (and after the caller recorded its StopResult): wake waiters, notify."""
        self._done.set()
        self._emit()
