"""The record of one run, as the history holds it: plain fields, one per column.

The database keeps epoch floats and JSON text; a record has aware UTC datetimes, tuples
and bools, so ``pandas.DataFrame(records)`` gives useful columns without pandas being
needed here.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ._results import StopResult, Survivor
from ._status import STOP_CAUSES, STOP_REASONS, StopCause

STOP_COLUMNS = ("stop_stopped", "stop_reason", "stop_prior_status", "stop_status", "stop_escalated",
                "stop_unkillable", "stop_signalled", "stop_swept", "stop_elapsed_s", "stop_error",
                "stop_verified_by", "stop_cause", "stop_note")


@dataclass(frozen=True)
class RunRecord:
    """One run as the history knows it: plain fields, so ``pandas.DataFrame(records)`` works.

    ``status`` may also be ``lost`` (recorded live, but its kernel and its processes are
    gone) or ``orphaned`` (its kernel is gone, its processes are not); ``recorded_status``
    is what the database holds.
    """

    id: str
    name: str
    status: str
    returncode: int | None
    started_at: datetime
    ended_at: datetime | None
    argv: tuple[str, ...]
    cwd: str
    pid: int | None
    lines: int
    bytes: int
    error: str | None
    recorded_status: str
    env_keys: tuple[str, ...]
    env_unset: tuple[str, ...]
    command: str | tuple[str, ...]
    shell: bool
    timeout: float | None
    grace: float
    kernel_pid: int
    kernel_ctime: float
    host: str
    cookie: str
    log_dir: str
    updated_at: datetime
    stop_requested: datetime | None = None
    stop_reason: str | None = None
    stop_stopped: bool | None = None
    stop_prior_status: str | None = None
    stop_status: str | None = None
    stop_escalated: bool | None = None
    stop_unkillable: str | None = None
    stop_signalled: int | None = None
    stop_swept: int | None = None
    stop_elapsed_s: float | None = None
    stop_error: str | None = None
    stop_verified_by: str | None = None
    stop_cause: str | None = None
    stop_note: str | None = None
    containment: str | None = None
    cgroup: str | None = None
    uid: int | None = None
    format: str | None = None
    agent: dict[str, Any] | None = None
    parent_id: str | None = None
    input: str | None = None
    worktree: dict[str, str] | None = None
    options: dict[str, Any] | None = None

    @property
    def last_stop(self) -> StopResult | None:
        """The last stop's result, as ``Run.last_stop`` had it, or None."""
        reason = next((r for r in STOP_REASONS if r == self.stop_reason), None)
        if reason is None:
            return None
        survivors = tuple(Survivor(int(p), str(s), str(n)) for p, s, n in json.loads(self.stop_unkillable or "[]"))
        cause: StopCause = next((c for c in STOP_CAUSES if c == self.stop_cause), "user")
        return StopResult(
            run_id=self.id, name=self.name, stopped=bool(self.stop_stopped), reason=reason,
            prior_status=self.stop_prior_status or "", status=self.stop_status or "",
            escalated=bool(self.stop_escalated), unkillable=survivors,
            signalled=self.stop_signalled or 0, swept=self.stop_swept or 0,
            elapsed_s=self.stop_elapsed_s or 0.0, error=self.stop_error,
            verified_by=self.stop_verified_by or "", cause=cause, note=self.stop_note,
        )


def _when(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, timezone.utc)


def record_from_row(row: sqlite3.Row) -> RunRecord:
    command = json.loads(row["command"])
    started = _when(row["started_at"])
    updated = _when(row["updated_at"])
    assert started is not None and updated is not None
    return RunRecord(
        id=row["id"], name=row["name"], status=row["status"], recorded_status=row["status"],
        returncode=row["returncode"], started_at=started, ended_at=_when(row["ended_at"]),
        argv=tuple(json.loads(row["argv"])), cwd=row["cwd"], pid=row["pid"],
        lines=row["lines"], bytes=row["bytes"], error=row["error"],
        env_keys=tuple(json.loads(row["env_keys"])), env_unset=tuple(json.loads(row["env_unset"])),
        command=command if isinstance(command, str) else tuple(command), shell=bool(row["shell"]),
        timeout=row["timeout"], grace=row["grace"], kernel_pid=row["kernel_pid"],
        kernel_ctime=row["kernel_ctime"], host=row["host"], cookie=row["cookie"],
        log_dir=row["log_dir"], updated_at=updated, stop_requested=_when(row["stop_requested"]),
        stop_reason=row["stop_reason"],
        stop_stopped=None if row["stop_stopped"] is None else bool(row["stop_stopped"]),
        stop_prior_status=row["stop_prior_status"], stop_status=row["stop_status"],
        stop_escalated=None if row["stop_escalated"] is None else bool(row["stop_escalated"]),
        stop_unkillable=row["stop_unkillable"], stop_signalled=row["stop_signalled"],
        stop_swept=row["stop_swept"], stop_elapsed_s=row["stop_elapsed_s"], stop_error=row["stop_error"],
        stop_verified_by=row["stop_verified_by"], stop_cause=row["stop_cause"], stop_note=row["stop_note"],
        containment=row["containment"], cgroup=row["cgroup"], uid=row["uid"], format=row["format"],
        agent=_json(row["agent"]), parent_id=row["parent_id"], input=row["input"],
        worktree=_json(row["worktree"]), options=_json(row["options"]),
    )


def _json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def stop_columns(stop: StopResult | None) -> dict[str, Any]:
    if stop is None:
        return dict.fromkeys(STOP_COLUMNS)
    return {
        "stop_stopped": int(stop.stopped), "stop_reason": stop.reason,
        "stop_prior_status": stop.prior_status, "stop_status": stop.status,
        "stop_escalated": int(stop.escalated),
        "stop_unkillable": json.dumps([[s.pid, s.status, s.name] for s in stop.unkillable]),
        "stop_signalled": stop.signalled, "stop_swept": stop.swept,
        "stop_elapsed_s": stop.elapsed_s, "stop_error": stop.error,
        "stop_verified_by": stop.verified_by, "stop_cause": stop.cause, "stop_note": stop.note,
    }
