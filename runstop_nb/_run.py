"""A run: one agent's process tree, its status, and its logs.

A run knows nothing of widgets or history. It announces every status change to its
listeners (the recorder and the UI subscribe), displays itself through the kernel
state's ``display`` hook (the UI registers it), and is re-run through the function that
started it.
"""

from __future__ import annotations

import builtins
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from ._agents import AgentSummary, Card, resume_argv, user_message_line
from ._kernelstate import kernel_state
from ._lifecycle import Event, next_status
from ._logs import LineCounter, LiveTail, LogFiles, TailBuffer
from ._proc.ladder import Verdict
from ._results import StopResult, Survivor
from ._spec import RunSpec, check_seconds
from ._status import RunStatus, StopCause, StopReason
from ._transcript import Transcript
from ._units import clock, size
from .errors import InputError, InvalidSpecError

if TYPE_CHECKING:
    from ._launcher import Agent
    from ._supervisor import Supervisor
    from ._worktree import FileChange, Worktree

log = logging.getLogger("runstop_nb")
WATCH_EVERY = 0.25  # seconds between checks on a tree that survived SIGKILL
ENDED_TAIL_LINES = 200  # display lines kept in memory once a run has ended
FIRST_OUTPUT_WINDOW = 3.0  # seconds a new run's logs are polled every 10 ms, until it writes
SEND_TIMEOUT = 2.0  # seconds send() waits for an agent that is not reading its input


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

    live = True  # a run of this kernel: it can be stopped, sent input, resumed

    def __init__(self, spec: RunSpec, name: str, logs: LogFiles, supervisor: Supervisor,
                 key: str | None = None, restart: Callable[..., Run] | None = None,
                 worktree: Worktree | None = None, started_at: datetime | None = None) -> None:
        """``started_at``: when an adopted run (a Ray job another kernel started) began."""
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
        self.backend = "local"  # what launched it: "local" or "ray" (its agent says)
        self.started_at = started_at or datetime.now(timezone.utc)
        self.ended_at: datetime | None = None
        self.error: str | None = None  # why a run ended abnormally, e.g. its guard died
        self.last_stop: StopResult | None = None
        self.buffer = TailBuffer()
        self.worktree = worktree
        self.parent = spec.parent  # the run this one resumes
        self.idle_after = spec.idle
        self._transcript = Transcript(logs.stdout, spec.format) if spec.format != "text" else None  # type: ignore[arg-type]
        self._budget_hit = False
        self._last_output = time.monotonic()
        self._input_fd: int | None = None
        self._input_lock = threading.Lock()
        self._logs = logs
        self._supervisor = supervisor
        self._restart = restart
        self._status = RunStatus.RUNNING
        self._stop_cause: StopCause = "user"
        self._stop_note: str | None = None
        self._agent: Agent | None = None
        self._start_kwargs: dict[str, Any] = {}  # the backend's start() arguments (rerun)
        self._tail: LiveTail | None = None
        self._t0 = time.monotonic() - (datetime.now(timezone.utc) - self.started_at).total_seconds()
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
        self.backend = str(getattr(agent, "backend", "local"))
        self._start_kwargs = dict(getattr(agent, "start_kwargs", None) or {})
        self._input_fd = agent.input_fd
        self._tail = LiveTail(self._logs, self.buffer, writes_order=not agent.records_order)
        # A guard records every write in order.idx within milliseconds: tick when it grows
        # (and every QUIET_TICK). A timeout needs every tick; so does a tail without a guard.
        wake_on = str(self._logs.order) if agent.records_order and self.spec.timeout is None else None
        self._supervisor.add_ticker(self, self._tick, wake_on=wake_on)
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

    def command_text(self) -> str:
        """The command as a person would type it."""
        import shlex

        return self.spec.command if isinstance(self.spec.command, str) else shlex.join(self.argv)

    def _options(self) -> dict[str, Any]:
        spec = self.spec
        return dict(timeout=spec.timeout, grace=spec.grace, containment=spec.containment, stdin=spec.stdin,
                    pty=spec.pty, idle=spec.idle, max_cost=spec.max_cost, max_tokens=spec.max_tokens,
                    **self._start_kwargs)  # the backend: a Ray run reruns on its cluster

    @property
    def ray_job(self) -> dict[str, str] | None:
        """On Ray: ``address`` (the cluster's), ``job_id`` (Ray's) and ``node``; else None."""
        placement = getattr(self._agent, "placement", None)
        return dict(placement()) if callable(placement) else None

    @property
    def ray_options(self) -> dict[str, Any] | None:
        """On Ray: the options it was started with (num_cpus, runtime_env...); else None."""
        options = self._start_kwargs.get("ray_options")
        return None if options is None else dict(options)

    def rerun(self) -> Run:
        """Start the same command again, as a new run (same name once this one has ended)."""
        if self._restart is None:
            raise RuntimeError("this run was not started by runstop_nb.start(); start it again yourself")
        spec = self.spec
        return self._restart(
            spec.command if spec.shell else list(spec.command),
            name=self.name if self.done else None, cwd=spec.cwd, env=dict(spec.env_overrides),
            shell=spec.shell, key=self.key, format=spec.format, worktree=spec.worktree, **self._options(),
        )

    # -- agent runs -------------------------------------------------------------------

    @property
    def format(self) -> str:
        """The stdout event format: claude, codex, gemini, text, or auto while undecided."""
        return self._transcript.kind if self._transcript is not None else "text"

    @property
    def agent(self) -> AgentSummary | None:
        """The agent's session, model, turns, tool calls, usage and result (None for a plain run)."""
        return self._transcript.summary() if self._transcript is not None else None

    def cards(self, n: int | None = None) -> list[Card]:
        """The newest ``n`` cards of the agent's work, oldest first (empty for a plain run)."""
        return list(self._transcript.cards(n)) if self._transcript is not None else []

    def card_text(self, card_id: str) -> str | None:
        """A card's whole text (for "show all"), while it is still held."""
        return self._transcript.card_text(card_id) if self._transcript is not None else None

    @property
    def idle_for(self) -> float | None:
        """Seconds since the agent last wrote anything (None once the run has ended)."""
        return None if self.done else time.monotonic() - self._last_output

    @property
    def waiting(self) -> str | None:
        """Why the agent waits for the user (a permission denial, an input request), or None."""
        summary = self.agent
        return summary.waiting if summary is not None and not self.done else None

    def resume(self, prompt: str) -> Run:
        """Continue this agent's session with ``prompt``, as a new run linked to this one.

        Uses the CLI's own resume syntax (``claude -p --resume ID``, ``codex exec resume ID``,
        ``gemini --resume ID``), keeping the original options, working folder (its worktree,
        if it had one) and limits. The run must have ended."""
        summary = self.agent
        if summary is None or not summary.session_id:
            raise InvalidSpecError(f"{self.name!r} has no agent session to resume (format {self.format})")
        if not self.done:
            raise InvalidSpecError(f"{self.name!r} is still running; stop it or wait for it, then resume")
        if self._restart is None:
            raise RuntimeError("this run was not started by runstop_nb.start()")
        try:
            argv = resume_argv(summary.kind, self.argv, summary.session_id, prompt)
        except ValueError as e:
            raise InvalidSpecError(str(e)) from None
        cwd = self.cwd if self.worktree is None else self._worktree_cwd()
        new = self._restart(argv, name=self.name, cwd=cwd, env=dict(self.spec.env_overrides), key=self.key,
                            format=summary.kind, parent=self.id, **self._options())
        if prompt not in argv and summary.kind == "claude":  # --input-format stream-json: the prompt goes in on stdin
            new.send(prompt)
        return new

    def _worktree_cwd(self) -> str:
        from ._worktree import workdir_for

        assert self.worktree is not None
        return workdir_for(self.worktree, self.spec.cwd)

    # -- input ------------------------------------------------------------------------

    @property
    def stdin_open(self) -> bool:
        """True while input can be sent (the run was started with stdin or pty, and is live)."""
        return self._input_fd is not None and not self.done

    def send(self, text: str | builtins.bytes) -> None:
        """Write ``text`` to the agent's stdin (its terminal, in pty mode); never blocks long.

        For Claude Code reading ``--input-format stream-json``, text is wrapped as the user
        message event it expects. What is sent is kept in the log as its own stream.
        Raises InputError if the run has ended, has no stdin, or does not read it (its pipe
        stays full for SEND_TIMEOUT seconds; what could be written is kept in the log)."""
        if self.done or self._status.terminal:
            raise InputError(f"{self.name!r} has ended; nothing can be sent to it")
        fd = self._input_fd
        if fd is None:
            raise InputError(f"{self.name!r} was started without stdin; use %agent_run --stdin or start(stdin=True)")
        if isinstance(text, str) and self._wants_stream_json():
            data = user_message_line(text)
        else:
            data = text.encode() if isinstance(text, str) else builtins.bytes(text)
        import select

        with self._input_lock:
            # Its place in the log is fixed before the agent can see it: after the bytes it had
            # written by now. If only part goes through, the rest is taken back from the log.
            start = self._record_input(data)
            sent, deadline = 0, time.monotonic() + SEND_TIMEOUT
            try:
                while sent < len(data):
                    try:
                        sent += os.write(fd, data[sent:])
                    except BlockingIOError:
                        left = deadline - time.monotonic()
                        if left <= 0 or not select.select([], [fd], [], left)[1]:
                            raise InputError(
                                f"{self.name!r} is not reading its input (its pipe was full for {SEND_TIMEOUT:.0f} s); "
                                f"sent {size(sent)} of {size(len(data))}") from None
            except (BrokenPipeError, OSError) as e:
                if isinstance(e, InputError):
                    raise
                raise InputError(f"{self.name!r} closed its input ({e.strerror or e}); nothing more can be sent") from None
            finally:
                if sent < len(data):
                    self._unsend(start, sent, len(data) - sent)

    def _wants_stream_json(self) -> bool:
        argv = self.argv
        return any(a == "--input-format" and argv[i + 1 : i + 2] == ["stream-json"] for i, a in enumerate(argv)) or (
            "--input-format=stream-json" in argv)

    def _record_input(self, data: builtins.bytes) -> int:
        """Append ``data`` to stdin.log, and its place among the agent's writes to the order
        index (``i<n>:<stdout size>:<stderr size>``); return stdin.log's size before it."""
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        marks = (self._logs.stdout.stat().st_size, self._logs.stderr.stat().st_size)
        fd = os.open(self._logs.stdin, flags, 0o600)
        try:
            start = os.fstat(fd).st_size
            os.write(fd, data)
        finally:
            os.close(fd)
        self._order_record(b"i%d:%d:%d\n" % (len(data), *marks))
        return start

    def _unsend(self, start: int, sent: int, unsent: int) -> None:
        """Take back from the log what could not be sent (``u<n>``: the last n bytes of input)."""
        os.truncate(self._logs.stdin, start + sent)
        self._order_record(b"u%d\n" % unsent)

    def _order_record(self, record: builtins.bytes) -> None:
        fd = os.open(self._logs.order, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, record)
        finally:
            os.close(fd)

    def close_stdin(self) -> None:
        """End the agent's input (it reads EOF). Idempotent."""
        with self._input_lock:
            fd, self._input_fd = self._input_fd, None
        if fd is not None:
            os.close(fd)

    def interrupt(self) -> None:
        """Ctrl+C: SIGINT to the agent's foreground process group (its terminal's, in pty
        mode). Not a stop: the agent decides what to do with it."""
        agent = self._agent
        if agent is None or self.done:
            raise InputError(f"{self.name!r} has ended; there is nothing to interrupt")
        agent.interrupt()

    # -- worktree ---------------------------------------------------------------------

    def diff(self) -> str:
        """What the agent changed in its worktree, against the commit it started from
        (uncommitted and untracked files included). "" for a run without a worktree."""
        from ._worktree import diff

        return diff(self.worktree) if self.worktree is not None else ""

    def diffstat(self) -> list[FileChange]:
        """The files the agent changed in its worktree, with +/- line counts."""
        from ._worktree import diffstat

        return diffstat(self.worktree) if self.worktree is not None else []

    def discard(self, force: bool = False) -> None:
        """Remove the run's worktree and its branch; refuses uncommitted or unmerged work unless ``force``."""
        from ._worktree import remove

        if self.worktree is None:
            return
        if not self.done:
            raise InvalidSpecError(f"{self.name!r} is still running in its worktree; stop it first")
        remove(self.worktree, force=force)

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
        """Supervisor thread (after a write, at most 10 Hz; else every 2 s): read new output; fire the timeout."""
        grew = self._tail is None  # without a tail, the transcript looks for itself
        with self._tail_lock:
            if self._tail is not None and not self._tail.closed and self._tail.poll():
                self._supervisor.relax(self)
                self._last_output = time.monotonic()
                grew = True
        transcript = self._transcript
        if transcript is not None and (grew or transcript.behind) and transcript.poll() and not self._budget_hit:
            over = self._over_budget()
            agent = self._agent  # a limit crossed by the last report, after the agent exited, stops nothing
            if over and self._status == RunStatus.RUNNING and not self._ending and (
                    agent is None or agent.returncode is None):
                self._budget_hit = True
                self._spawn(lambda: self.stop_for("budget", note=over), "budget")
        if (self._deadline is not None and self._status == RunStatus.RUNNING and not self._ending
                and time.monotonic() >= self._deadline):
            self._deadline = None
            self._spawn(lambda: self._stop("timeout", self.grace, None), "timeout")

    def _over_budget(self) -> str | None:
        """"budget exceeded: …" once a total passed the run's limit, else None."""
        summary = self.agent
        if summary is None:
            return None
        usage, spec = summary.usage, self.spec
        if spec.max_cost is not None and usage.cost_usd is not None and usage.cost_usd > spec.max_cost:
            return f"budget exceeded: ${usage.cost_usd:.4f} spent, limit ${spec.max_cost:.4f}"
        tokens = usage.input_tokens + usage.output_tokens
        if spec.max_tokens is not None and tokens > spec.max_tokens:
            return f"budget exceeded: {tokens:,} tokens, limit {spec.max_tokens:,}"
        return None

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
                if verdict.verified_by:
                    how = "verified dead" if verdict.dead else "NOT all dead"
                    self.error = f"{lost}; its tree was stopped ({how}, by {verdict.verified_by})"
                else:
                    self.error = f"{lost}; whether its tree is dead is not known here"
                event = Event.LOST  # nobody asked it to stop: it failed
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
        # Not dead, and nothing verified either way (a Ray node's verdict never arrived): say
        # so, rather than claim survivors nobody saw.
        unknown = not verdict.dead and not verdict.survivors and not verdict.verified_by
        reason: StopReason = "stopped" if verdict.dead else "error" if unknown else "unkillable"
        return self._result(
            verdict.dead, reason, prior, t0, escalated=verdict.escalated,
            error=(verdict.note or "no verdict on the tree") if unknown else None,
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
        if self._transcript is not None:
            self._transcript.close()
        self.close_stdin()
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
