"""The vocabulary: every status a run or a record can have, and every reason a stop gives.

Defined once, here, and imported by the lifecycle table, the history's SQL, the CLI, the
widget's badges and the past runs, so a new status is one edit (a test checks that they
all agree). Like supervisor's ``states.py``, this module must not import anything but the
standard library, so that every layer can import it without a cycle.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal, get_args


class RunStatus(str, Enum):
    """The statuses of a live run in this kernel (the lifecycle table moves between them)."""

    RUNNING = "running"  # the agent started and its tree may be alive
    STOPPING = "stopping"  # a stop or timeout began; the tree is not yet verified dead
    COMPLETED = "completed"  # the root exited 0 and its tree is dead
    FAILED = "failed"  # the root exited non-zero (or by a signal nobody asked for)
    CANCELLED = "cancelled"  # stopped by a user, a budget, cleanup or its kernel going; the tree is dead
    TIMED_OUT = "timed_out"  # its timeout elapsed and the tree was stopped

    def __str__(self) -> str:
        return self.value

    @property
    def terminal(self) -> bool:
        return self.value in TERMINAL


# What a history record can say. ``lost`` and ``orphaned`` are judged when a record is read:
# recorded live, but its kernel is gone, and its processes with it (lost: how it ended is
# unknown) or not (orphaned: `runstop reap` stops them).
Status = Literal["running", "stopping", "completed", "failed", "cancelled", "timed_out", "lost", "orphaned"]
STATUSES: tuple[Status, ...] = get_args(Status)
LIVE: tuple[Status, ...] = ("running", "stopping")
TERMINAL: tuple[Status, ...] = ("completed", "failed", "cancelled", "timed_out")
JUDGED: tuple[Status, ...] = ("lost", "orphaned")  # history only, never stored
UNSETTLED: tuple[Status, ...] = (*LIVE, "orphaned")  # a tree may still be alive

# What a StopResult says happened to the stop itself.
StopReason = Literal["stopped", "already_terminal", "unkillable", "error"]
STOP_REASONS: tuple[StopReason, ...] = get_args(StopReason)

# Why a run was (or is being) stopped.
StopCause = Literal["user", "timeout", "budget", "restart", "cli", "guard_lost", "kernel_gone", "janitor", "exit"]
STOP_CAUSES: tuple[StopCause, ...] = get_args(StopCause)
CAUSE_WORDS: dict[StopCause, str] = {
    "user": "stopped",
    "timeout": "timed out",
    "budget": "budget exceeded",
    "restart": "replaced by --restart",
    "cli": "stopped by `runstop stop`",
    "guard_lost": "its guard was lost (it died, or its Ray head stopped answering)",
    "kernel_gone": "its kernel went away",
    "janitor": "orphaned; stopped by the janitor",
    "exit": "leftovers of a finished run",
}

# How a run's tree is held, so that "dead" can be verified.
Containment = Literal["cgroup", "guard", "none"]
CONTAINMENTS: tuple[Containment, ...] = get_args(Containment)

# What established that a tree is dead (a StopResult never claims more).
VerifiedBy = Literal["cgroup+subreaper", "subreaper", "cgroup", "scan", ""]
