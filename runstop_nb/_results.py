"""Typed, frozen records of what a stop did."""

from __future__ import annotations

from dataclasses import dataclass

from ._status import CAUSE_WORDS, StopCause, StopReason
from ._units import plural


@dataclass(frozen=True)
class Survivor:
    """A process that was still alive when a stop gave up on it."""

    pid: int
    status: str  # e.g. "disk-sleep" for D state
    name: str

    def __str__(self) -> str:
        return f"pid {self.pid} ({self.name}, {self.status})"


@dataclass(frozen=True)
class StopResult:
    """What ``Run.stop()`` did, and no more than was verified.

    ``stopped`` is True only when this call ended the run with its whole tree verified
    dead. ``reason`` is one of:

    * ``"stopped"``: the tree is dead; the run is now cancelled (or timed_out).
    * ``"already_terminal"``: the run had already ended; nothing was signalled.
    * ``"unkillable"``: some processes survived SIGKILL (listed in ``unkillable``);
      the run stays ``stopping`` and is watched in the background. Retry, or look at
      the listed pids (D state usually means stuck I/O).
    * ``"error"``: the stop itself failed (``error`` says why); retry.

    ``verified_by`` says what established that the tree is dead: ``"subreaper"`` (the
    run's guard had no child left), ``"cgroup"`` or ``"cgroup+subreaper"`` (its cgroup
    also reported no member), or ``"scan"`` (no process of the run was found: an
    observation, on platforms or in modes without a guard). ``escalated`` is True
    whenever anything outlived SIGTERM and the grace. ``cause`` says why the run was
    stopped (user, timeout, budget, ...), and ``note`` adds what a person should know
    (the budget figure, a guard that had been stopped by its agent, ...).
    """

    run_id: str
    name: str
    stopped: bool
    reason: StopReason
    prior_status: str
    status: str
    escalated: bool = False
    unkillable: tuple[Survivor, ...] = ()
    signalled: int = 0
    swept: int = 0
    elapsed_s: float = 0.0
    error: str | None = None
    verified_by: str = ""
    cause: StopCause = "user"
    note: str | None = None

    def __str__(self) -> str:
        if self.reason == "already_terminal":
            return f"{self.name}: already {self.status}; nothing signalled"
        if self.reason == "stopped":
            how = "SIGKILL needed" if self.escalated else "exited on SIGTERM"
            why = "" if self.cause in ("user", "timeout") else f"; {CAUSE_WORDS[self.cause]}"
            note = f"; {self.note}" if self.note else ""
            return (f"{self.name}: {self.status} in {self.elapsed_s * 1000:.0f} ms "
                    f"({plural(self.signalled, 'process', 'processes')}, {how}{why}{note})")
        if self.reason == "unkillable":
            who = ", ".join(str(s) for s in self.unkillable)
            return f"{self.name}: NOT stopped, survivors: {who}; retry, or inspect them"
        return f"{self.name}: stop failed: {self.error}; retry"
