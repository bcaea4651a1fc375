"""Past runs: ``history()`` as a list of records, and ``load()`` of one read-only run.

A past run reads like a :class:`~runstop_nb.Run` (id, name, status, returncode, times,
logs, ``output()``, ``tail()``, ``last_stop``) so the same widget can show it, but it
controls nothing: it may belong to another kernel, or to none. ``rerun()`` starts its
command again as a new run of this kernel.

A run recorded ``running`` or ``stopping`` whose kernel is gone shows as ``lost`` when
its processes are gone too (how it ended is unknown), or ``orphaned`` while some still
live (``runstop_nb.reap_orphans()`` stops them). Runs recorded on another host keep
their recorded status: their kernel cannot be checked from here.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import shlex
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._agents import AgentSummary, Card, resume_argv
from ._history import Store, store_for
from ._home import db_path
from ._janitor import owner_alive, scan
from ._logs import ALL_STREAMS, STREAMS, LineCounter, LogFiles, TailBuffer
from ._logs import _file_size as log_size
from ._proc import procfs
from ._proc.guard import VERDICT_FILE
from ._record import RunRecord
from ._recorder import HOST, flush
from ._results import StopResult
from ._spec import DEFAULT_IDLE, RunSpec
from ._status import JUDGED, LIVE, STATUSES, TERMINAL
from ._transcript import Transcript, rebuild
from ._units import clock
from ._worktree import FileChange, Worktree, workdir_for
from ._worktree import diff as wt_diff
from ._worktree import diffstat as wt_diffstat
from ._worktree import remove as wt_remove
from .errors import HistoryError, InputError, InvalidSpecError, NameInUseError, RunNotFoundError, RunstopError

if TYPE_CHECKING:
    from ._run import Run

log = logging.getLogger("runstop_nb")

MY_UID = os.getuid() if hasattr(os, "getuid") else -1
TAIL_LINES = 200  # display lines a past run's buffer holds, as an ended Run keeps
ROOT_STARTS_WITHIN = 60.0  # seconds: a live pid that started this near the run's start is its root


def judge(records: list[RunRecord]) -> list[RunRecord]:
    """Records, with runs recorded live whose kernel is gone shown as they really ended.

    The guard leaves its verdict in the run's log folder, so a run whose kernel died
    mid-run reads as ``cancelled`` (its kernel went away; the guard stopped the tree) or
    as ``completed``/``failed`` (it ended first), with its stop result. Without a verdict
    it is ``orphaned`` while processes carrying its cookie live, else ``lost``. The
    cookie is looked for in every process whose environment this user can read (root:
    everyone's, so an agent that changed its uid is still found). A run whose processes
    cannot be read (another user's) keeps its recorded status and says why: see
    ``cannot_check``.
    """
    live_cookies: set[str] | None = None
    owners: dict[tuple[int, float], bool] = {}
    out = []
    for rec in records:
        if rec.recorded_status in LIVE and rec.host == HOST:
            owner = (rec.kernel_pid, rec.kernel_ctime)
            if owner not in owners:
                owners[owner] = owner_alive(*owner)
            if not owners[owner]:
                if live_cookies is None:
                    live_cookies = _visible_cookies()  # one /proc pass for all rows
                if rec.cookie in live_cookies:
                    rec = replace(rec, status="orphaned")
                else:
                    rec = from_verdict(rec) or _unreadable(rec) or replace(rec, status="lost")
        out.append(rec)
    return out


def _visible_cookies() -> set[str]:
    """The run cookies of every live process whose environment this process can read."""
    cookies = {t.cookie for t in scan()}  # this user's
    if MY_UID == 0:  # root reads everyone's: agents run (or switched to) another uid count too
        for pid, env in procfs.scan(procfs.COOKIE_VAR.encode() + b"=", uid=procfs.ANY_UID):
            st = procfs.stat(pid)
            cookie = procfs.markers(env).get(procfs.COOKIE_VAR)
            if cookie and st is not None and not st.dead:
                cookies.add(cookie)
    return cookies


def _unreadable(rec: RunRecord) -> RunRecord | None:
    """The record, marked as impossible to check from here, when its processes may live but
    cannot be read: it belongs to another user, or its root process still runs under a uid
    whose environment this process cannot read. None when that is not so."""
    other_user = rec.uid is not None and rec.uid != MY_UID and MY_UID != 0
    st = procfs.stat(rec.pid) if rec.pid else None
    root_hidden = (st is not None and not st.dead and procfs.environ(st.pid) is None
                   and abs(procfs.start_epoch(st) - rec.started_at.timestamp()) < ROOT_STARTS_WITHIN)
    if not (other_user or root_hidden):
        return None
    owner = f"uid {rec.uid}" if other_user else f"uid {procfs.owner_uid(st.pid) if st else '?'}"
    return replace(rec, error=rec.error or (
        f"its kernel is gone; its processes belong to {owner}, so whether they still run cannot be "
        "checked from here; run `runstop` as that user or as root"))


def cannot_check(rec: RunRecord) -> bool:
    """True for a judged record whose kernel is gone but whose processes this process cannot read
    (``judge`` keeps its recorded live status): whether they still run is unknown."""
    return (rec.status in LIVE and rec.recorded_status in LIVE and rec.host == HOST
            and not owner_alive(rec.kernel_pid, rec.kernel_ctime))


def cannot_check_owner(rec: RunRecord) -> str:
    """Who the processes of a ``cannot_check`` record belong to, in words."""
    st = procfs.stat(rec.pid) if rec.pid else None
    uid = procfs.owner_uid(st.pid) if st is not None else rec.uid
    return f"uid {uid}"


def from_verdict(rec: RunRecord) -> RunRecord | None:
    """The record as its guard's (or the warden's) verdict file tells its end; None without one."""
    try:
        body = json.loads((Path(rec.log_dir) / VERDICT_FILE).read_text())
        cause = str(body["cause"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    returncode = body.get("returncode")
    ended = datetime.fromtimestamp(float(body.get("ended_at") or time.time()), timezone.utc)
    if cause == "exit":
        status = "completed" if returncode == 0 else "failed"
        return replace(rec, status=status, returncode=returncode, ended_at=ended)
    stop_cause = {"kernel": "kernel_gone", "guard_lost": "guard_lost"}.get(cause, "user")
    error = {"kernel_gone": "its kernel went away; its guard stopped the tree",
             "guard_lost": "its guard process died; the warden stopped the tree"}.get(stop_cause)
    survivors = json.dumps([list(s) for s in body.get("survivors", ())])
    return replace(
        rec, status="cancelled", returncode=returncode, ended_at=ended, error=rec.error or error,
        stop_reason="stopped" if body.get("dead") else "unkillable", stop_stopped=bool(body.get("dead")),
        stop_prior_status=rec.recorded_status, stop_status="cancelled", stop_escalated=bool(body.get("escalated")),
        stop_unkillable=survivors, stop_signalled=int(body.get("signalled") or 0), stop_swept=int(body.get("swept") or 0),
        stop_elapsed_s=float(body.get("elapsed_s") or 0.0), stop_error=None,
        stop_verified_by=str(body.get("verified_by") or ""), stop_cause=stop_cause, stop_note=body.get("note") or None,
    )


def command_text(rec: RunRecord) -> str:
    return rec.command if isinstance(rec.command, str) else shlex.join(rec.argv)


def elapsed(rec: RunRecord) -> float | None:
    """Seconds the run lasted; for a lost run, until its logs were last written (an estimate)."""
    start = rec.started_at.timestamp()
    if rec.ended_at is not None:
        return rec.ended_at.timestamp() - start
    if rec.status == "lost":
        files = LogFiles(Path(rec.log_dir))
        times = [p.stat().st_mtime for p in (files.stdout, files.stderr, files.order) if p.exists()]
        return max([start, *times]) - start
    return time.time() - start


def table(records: Iterable[RunRecord]) -> str:
    """A plain-text table of records, one line each."""
    rows = [("ID", "NAME", "STATUS", "EXIT", "STARTED", "ELAPSED", "LINES", "COMMAND")]
    for r in records:
        cmd = command_text(r)
        rows.append((
            r.id, r.name, r.status, "" if r.returncode is None else str(r.returncode),
            r.started_at.astimezone().strftime("%Y-%m-%d %H:%M:%S"), clock(elapsed(r)), str(r.lines),
            cmd if len(cmd) <= 60 else cmd[:59] + "…",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
                     for row in rows)


def html_table(records: Iterable[RunRecord]) -> str:
    """The records as an HTML table that wraps at the cell's width; every value escaped, the
    status a text badge (``<span class="runstop-badge" data-status=…>``)."""
    head = ("ID", "NAME", "STATUS", "EXIT", "STARTED", "ELAPSED", "LINES", "COMMAND")
    rows = []
    for r in records:
        badge = f"<span class='runstop-badge' data-status='{escape(r.status)}'>{escape(r.status)}</span>"
        cells = [f"<code>{escape(r.id)}</code>", escape(r.name), badge,
                 "" if r.returncode is None else str(r.returncode),
                 escape(r.started_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")), escape(clock(elapsed(r))),
                 f"{r.lines:,}", f"<code>{escape(command_text(r))}</code>"]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    if not rows:
        return "<i>no runs recorded</i>"
    return ("<table class='runstop-history'><thead><tr>" + "".join(f"<th>{h}</th>" for h in head)
            + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


class Records(list[RunRecord]):
    """What ``history()`` returns: a plain list of :class:`RunRecord`, newest first.

    ``pandas.DataFrame(records)`` gives one column per field. ``repr()`` is an aligned
    text table (terminals, nbval); a notebook shows ``_repr_html_``, an HTML table that
    wraps at the cell's width instead of mid-word.
    """

    def __repr__(self) -> str:
        return table(self) if self else "[]"

    def _repr_html_(self) -> str:
        return html_table(self)

    def load(self, index: int = 0) -> PastRun:
        """The read-only past run of ``self[index]``."""
        return PastRun(self[index])


def _store() -> Store:
    flush()  # this kernel's pending writes first, so a read sees its own runs
    return store_for(db_path())


def _select(store: Store, where: str = "", params: Iterable[object] = (), limit: int | None = None) -> list[RunRecord]:
    try:
        return store.select(where, params, limit)
    except sqlite3.Error as e:
        raise HistoryError(f"cannot read the run history at {store.path} ({e}); retry in a moment") from e


def history(limit: int | None = 50, name: str | None = None, status: str | Iterable[str] | None = None) -> Records:
    """Runs recorded in this runs home, newest first, from every kernel that used it.

    ``limit`` caps how many (None: all); ``name`` keeps runs of that name; ``status``
    keeps runs in that status, or any of several (running, stopping, completed, failed,
    cancelled, timed_out, lost, orphaned). Raises HistoryError if the history cannot be
    read at all.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative int or None, not {limit!r}")
    wanted = None if status is None else ({status} if isinstance(status, str) else set(status))
    if wanted is not None and not wanted <= set(STATUSES):
        raise ValueError(f"unknown status {sorted(wanted - set(STATUSES))}; use some of {', '.join(STATUSES)}")
    if wanted is not None and not wanted:
        return Records()
    where, params = [], []
    if name is not None:
        where.append("name = ?")
        params.append(name)
    if wanted is not None:
        # A row recorded live may judge to lost, orphaned or (from its guard's verdict) terminal.
        recorded = wanted - set(JUDGED) | (set(LIVE) if wanted & {*JUDGED, *TERMINAL} else set())
        where.append(f"status IN ({', '.join('?' * len(recorded))})")
        params.extend(sorted(recorded))
    exact = wanted is None
    records = judge(_select(_store(), " AND ".join(where), params, limit if exact else None))
    if wanted is not None:
        records = [r for r in records if r.status in wanted]
    return Records(records if limit is None else records[:limit])


def load(run_id: str) -> PastRun | Run:
    """A recorded run, read-only, by id, by name (the latest run of that name), or by unique id prefix.

    Works for runs of any kernel, living or dead; ``runstop_nb.get()`` gives this
    kernel's live handle instead. One exception: a Ray run whose kernel is gone (a
    ``detach`` run, say) while its job is still on the cluster comes back as a live
    ``Run`` of this kernel, which streams, stops and records it from now on.
    """
    rec = find(run_id)
    return live_ray_run(rec) or PastRun(judge([rec])[0])


def past(run_id: str) -> PastRun:
    """``load()`` that always reads the history only: a PastRun, never a live handle."""
    return PastRun(judge([find(run_id)])[0])


def find(run_id: str) -> RunRecord:
    """The record of ``run_id`` (an id, a name: its latest run, or a unique id prefix), as stored."""
    if not isinstance(run_id, str) or not run_id:
        raise RunNotFoundError(f"no run {run_id!r} in the history; runstop_nb.history() lists runs")
    store = _store()
    found = _select(store, "id = ?", [run_id]) or _select(store, "name = ?", [run_id], 1)
    if not found and len(run_id) >= 4:
        prefixed = _select(store, "substr(id, 1, ?) = ?", [len(run_id), run_id], 2)
        found = prefixed if len(prefixed) == 1 else []
    if not found:
        raise RunNotFoundError(f"no run {run_id!r} in the history at {store.path}; runstop_nb.history() lists runs")
    return found[0]


def _ray_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """A recorded Ray run's options as start() takes them: its runtime_env's env_vars are
    recorded by key only (they may be secrets), so they are not set again."""
    ray_options = dict(options.get("ray_options") or {})
    runtime_env = dict(ray_options.get("runtime_env") or {})
    runtime_env.pop("env_var_keys", None)
    if runtime_env:
        ray_options["runtime_env"] = runtime_env
    else:
        ray_options.pop("runtime_env", None)
    return ray_options


def live_ray_run(rec: RunRecord) -> Run | None:
    """This kernel's live handle on a Ray run recorded live, if it can have one: the run of
    this kernel itself, or the job of a kernel that is gone (another live kernel keeps its
    own). None if the cluster does not answer or no longer knows the job."""
    from ._api import adopt
    from ._registry import registry

    options = rec.options or {}
    job = options.get("ray")
    if rec.recorded_status not in LIVE or options.get("backend") != "ray" or not isinstance(job, dict):
        return None
    mine = [r for r in registry().all() if r.id == rec.id]
    if mine:
        return mine[0]
    if rec.host == HOST and owner_alive(rec.kernel_pid, rec.kernel_ctime):
        return None
    spec = RunSpec(argv=tuple(rec.argv), cwd=rec.cwd, env_overrides=dict.fromkeys(rec.env_unset), name=rec.name,
                   timeout=rec.timeout, grace=rec.grace, shell=rec.shell, command=rec.command,
                   format=str(options.get("format") or "auto"), idle=float(options.get("idle") or DEFAULT_IDLE),
                   max_cost=options.get("max_cost"), max_tokens=options.get("max_tokens"), id=rec.id,
                   cookie=rec.cookie)
    try:
        return adopt(spec, rec.name, Path(rec.log_dir), rec.started_at, str(job.get("address")),
                     _ray_options(options))
    except RunstopError as e:
        log.info("runstop_nb: %s stays a past run: %s", rec.id, e)
        return None


class PastRun:
    """A recorded run, read-only: the same read surface as Run, plus ``rerun()``.

    ``done`` is always True: nothing here can change the run. ``refresh()`` reads it again.
    """

    done = True
    stop_in_progress = False
    key = None

    def __init__(self, record: RunRecord) -> None:
        self.record = record
        self.id = record.id
        self.name = record.name
        self.argv = list(record.argv)
        self.cwd = record.cwd
        self.pid = record.pid
        self.status = record.status
        self.returncode = record.returncode
        self.started_at: datetime = record.started_at
        self.ended_at: datetime | None = record.ended_at
        self.error = record.error
        self.grace = record.grace
        self.timeout = record.timeout
        self.log_dir = Path(record.log_dir)
        self.last_stop: StopResult | None = record.last_stop
        options = record.options or {}
        self.backend = str(options.get("backend") or "local")
        ray = options.get("ray")
        self.ray_job: dict[str, str] | None = dict(ray) if isinstance(ray, dict) else None
        self._logs = LogFiles(self.log_dir)
        self._counts: tuple[int, int] | None = None
        self._buffer: TailBuffer | None = None
        self._parsed: Transcript | None = None

    @property
    def elapsed(self) -> float:
        """Seconds the run lasted (for a lost run: until its logs were last written)."""
        return elapsed(self.record) or 0.0

    def _count(self) -> tuple[int, int]:
        """Lines and bytes of the logs: the row's, unless the logs grew after it was written
        (its kernel died mid-run), then counted from the logs in blocks, as a Run counts."""
        if self._counts is None:
            size = sum(log_size(self._logs.path(s)) for s in STREAMS)
            if size == self.record.bytes:
                self._counts = (self.record.lines, self.record.bytes)
            else:
                self._counts = (LineCounter(self._logs).count(), size)
        return self._counts

    @property
    def lines(self) -> int:
        return self._count()[0]

    @property
    def bytes(self) -> int:
        return self._count()[1]

    @property
    def buffer(self) -> TailBuffer:
        """The last lines of output, cleaned and tagged by stream, as a Run's buffer holds
        them. Reads a bounded amount from the end of the logs, whatever their size."""
        if self._buffer is None:
            buf = TailBuffer()
            decoders = {s: codecs.getincrementaldecoder("utf-8")("replace") for s in ALL_STREAMS}
            for stream, data in self._logs.tail_chunks(TAIL_LINES, ALL_STREAMS):
                buf.feed(stream, decoders[stream].decode(data))
            buf.shrink(TAIL_LINES)
            self._buffer = buf
        return self._buffer

    def output(self, stream: str = "both") -> str:
        """Everything the agent wrote, from the log (``stream``: both, stdout, stderr, stdin, all)."""
        return self._logs.output(stream)

    def tail(self, n: int = 50) -> str:
        """The last ``n`` lines of output, from the log (``\\r`` collapsed, bounded reads)."""
        return self._logs.tail(n)

    def command_text(self) -> str:
        return command_text(self.record)

    # -- what a live run can do, a past run cannot ---------------------------------------

    live = False
    idle_for = None
    waiting = None
    stdin_open = False

    @property
    def containment(self) -> str:
        return self.record.containment or "none"

    @property
    def idle_after(self) -> float:
        return float((self.record.options or {}).get("idle") or DEFAULT_IDLE)

    def _not_live(self, what: str) -> RunstopError:
        return InvalidSpecError(f"{self.name!r} is a past run ({self.status}); it cannot {what}. "
                                f"runstop_nb.get({self.name!r}) gives a live run of this kernel")

    def stop(self, grace: float | None = None) -> StopResult:
        raise self._not_live("be stopped from here; `runstop stop` stops any live run")

    def send(self, text: object) -> None:
        raise InputError(f"{self.name!r} is a past run ({self.status}); nothing can be sent to it")

    def interrupt(self) -> None:
        raise InputError(f"{self.name!r} is a past run ({self.status}); there is nothing to interrupt")

    def member_pids(self) -> list[int]:
        return []

    # -- agent runs ---------------------------------------------------------------------

    @property
    def format(self) -> str:
        return self.record.format or "text"

    def _transcript(self) -> Transcript | None:
        if self.format not in ("claude", "codex", "gemini"):
            return None
        if self._parsed is None:
            self._parsed = rebuild(self._logs.stdout, self.format)  # type: ignore[arg-type]
        return self._parsed

    @property
    def agent(self) -> AgentSummary | None:
        """The summary the history kept (from the whole stream), else rebuilt from the log."""
        if self.record.agent:
            return AgentSummary.from_dict(self.record.agent)
        t = self._transcript()
        return t.summary() if t is not None else None

    def cards(self, n: int | None = None) -> list[Card]:
        t = self._transcript()
        return list(t.cards(n)) if t is not None else []

    def card_text(self, card_id: str) -> str | None:
        t = self._transcript()
        return t.card_text(card_id) if t is not None else None

    def resume(self, prompt: str, env: Mapping[str, str | None] | None = None) -> Run:
        """Continue this agent's session with ``prompt``, as a new run of this kernel linked
        to this one (env values as for ``rerun``)."""
        from ._api import start

        summary = self.agent
        if summary is None or not summary.session_id:
            raise InvalidSpecError(f"{self.name!r} has no agent session to resume (format {self.format})")
        try:
            argv = resume_argv(summary.kind, self.argv, summary.session_id, prompt)
        except ValueError as e:
            raise InvalidSpecError(str(e)) from None
        tree = self.worktree
        cwd = workdir_for(tree, self.cwd) if tree is not None else self.cwd
        kwargs = {**self._start_options(env), "cwd": cwd, "format": summary.kind, "parent": self.id}
        kwargs.pop("shell", None)
        try:
            new = start(argv, name=self.name, **kwargs)
        except NameInUseError:
            new = start(argv, **kwargs)
        if prompt not in argv and summary.kind == "claude":
            new.send(prompt)
        return new

    # -- worktree -----------------------------------------------------------------------

    @property
    def worktree(self) -> Worktree | None:
        data = self.record.worktree
        if not data:
            return None
        try:
            return Worktree(**data)
        except TypeError:
            return None

    def diff(self) -> str:
        tree = self.worktree
        return wt_diff(tree) if tree is not None else ""

    def diffstat(self) -> list[FileChange]:
        tree = self.worktree
        return wt_diffstat(tree) if tree is not None else []

    def discard(self, force: bool = False) -> None:
        """Remove the run's worktree and its branch; refuses uncommitted or unmerged work unless ``force``."""
        tree = self.worktree
        if tree is not None:
            wt_remove(tree, force=force)

    def wait(self, timeout: float | None = None) -> str:
        return self.status

    async def wait_async(self, timeout: float | None = None) -> str:
        return self.status

    def members(self) -> list[object]:
        return []

    def add_listener(self, fn: Callable[[PastRun], None]) -> Callable[[], None]:
        """A past run never changes: ``fn`` is never called. Returns a no-op unsubscribe."""
        return lambda: None

    def refresh(self) -> PastRun:
        """This run as the history has it now."""
        return past(self.id)

    def _start_options(self, env: Mapping[str, str | None] | None) -> dict[str, Any]:
        """What start() needs to run this command again: env values as the history allows."""
        from ._registry import registry

        rec = self.record
        overrides: dict[str, str | None] = {k: None for k in rec.env_unset}
        if env is not None:
            overrides.update(env)
        elif rec.env_keys:
            mine = [r for r in registry().all() if r.id == self.id]
            if not mine:
                keys = ", ".join(rec.env_keys)
                raise InvalidSpecError(
                    f"run {self.id} set env {keys}, and history keeps no values (they may be secrets); "
                    f"pass them again: rerun(env={{{rec.env_keys[0]!r}: ...}}), or env={{}} to run without"
                )
            overrides = dict(mine[0].spec.env_overrides)
        options = rec.options or {}
        kwargs = {"cwd": rec.cwd, "env": overrides, "timeout": rec.timeout, "grace": rec.grace, "shell": rec.shell,
                  "stdin": rec.input == "pipe", "pty": rec.input == "pty", "idle": options.get("idle"),
                  "max_cost": options.get("max_cost"), "max_tokens": options.get("max_tokens")}
        if self.ray_job is not None:  # on the same cluster, with the same options
            kwargs.update(backend="ray", ray_address=self.ray_job.get("address"), ray_options=_ray_options(options))
        return kwargs

    def rerun(self, env: Mapping[str, str | None] | None = None) -> Run:
        """Start this run's command again as a new run of this kernel (same name if free).

        History keeps the *keys* of the env overrides, never their values (they may be
        secrets). If the run set any, pass them again as ``env``; a run of this kernel
        reuses its own values. Keys the run removed are removed again.
        """
        from ._api import start

        rec = self.record
        cmd: str | list[str] = rec.command if isinstance(rec.command, str) else list(rec.command)
        kwargs = {**self._start_options(env), "format": (rec.options or {}).get("format") or "auto",
                  "worktree": rec.worktree is not None}
        try:
            return start(cmd, name=self.name, **kwargs)
        except NameInUseError:
            return start(cmd, **kwargs)

    def _repr_mimebundle_(self, include: object = None, exclude: object = None) -> dict[str, Any]:
        """In a notebook, a past run displays as a read-only run widget (with Rerun)."""
        from ._kernelstate import kernel_state

        for bundle in kernel_state().fire("display", self):
            if bundle:
                return dict(bundle)
        return {"text/plain": repr(self)}

    def __repr__(self) -> str:
        extra = f" exit={self.returncode}" if self.returncode is not None else ""
        when = self.started_at.astimezone().strftime("%Y-%m-%d %H:%M")
        return f"<PastRun {self.name!r} {self.status}{extra} {clock(self.elapsed)} started {when}>"
