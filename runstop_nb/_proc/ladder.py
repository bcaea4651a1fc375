"""The stop ladder: one loop that ends a tree, and the verdict that says what it did.

Steps (the schedule below is the whole policy):

1. **ask**: SIGTERM, then SIGCONT (a stopped process cannot act on TERM), to each member,
   once. Exactly one SIGTERM per process per stop: many CLIs treat a second TERM as
   "force quit now" and skip their clean shutdown. Then wait up to ``grace`` seconds for
   the tree to *settle* (the tree's own fact: no child left, or ``populated 0``).
   Processes born during the grace are left alone: a graceful shutdown may start
   helpers (a ``git stash``) that must be allowed to finish.
2. **force**, only if the tree has not settled: SIGKILL every member (``cgroup.kill``
   where there is a group), re-listing the members each round, until the tree settles
   or ``FORCE_BUDGET`` runs out. Each round waits at most ``ROUND_WAIT``, and returns at
   once on SIGCHLD, so a fork chain is chased at the speed it forks.

``escalated`` is true whenever anything outlived the ask step, and only then. ``dead``
is the tree's settled fact at the end; a process that survived SIGKILL (D state) is
listed in ``survivors`` with its state, and the caller keeps watching.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from .trees import Tree

FORCE_BUDGET = 1.0  # seconds of SIGKILL rounds before survivors are reported
ROUND_WAIT = 0.02  # seconds between SIGKILL rounds (less on SIGCHLD)
POLL = 0.05  # seconds between checks during the grace (less on SIGCHLD)
_SIGCONT = getattr(signal, "SIGCONT", None)
_SIGKILL = getattr(signal, "SIGKILL", signal.SIGTERM)

STATE_WORDS = {"R": "running", "S": "sleeping", "D": "disk-sleep", "T": "stopped", "t": "tracing-stop",
               "Z": "zombie", "X": "dead", "I": "idle", "W": "paging", "P": "parked"}


@dataclass(frozen=True)
class Verdict:
    """What a climb did, as the process that ran it verified it."""

    dead: bool  # the tree is settled: verified by ``verified_by``
    escalated: bool  # something outlived the ask step (SIGKILL was needed)
    signalled: int  # distinct processes that were sent a signal
    elapsed_s: float
    verified_by: str  # "subreaper", "cgroup", "cgroup+subreaper", or "scan" (an observation)
    swept: int = 0  # members found only by the cookie sweep
    survivors: tuple[tuple[int, str, str], ...] = field(default=())  # (pid, state, name)
    note: str = ""  # what the process that ran it wants a person to know

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Verdict:
        survivors = tuple((int(p), str(s), str(n)) for p, s, n in data.get("survivors", ()))
        return cls(bool(data["dead"]), bool(data["escalated"]), int(data["signalled"]),
                   float(data["elapsed_s"]), str(data["verified_by"]), int(data.get("swept", 0)), survivors,
                   str(data.get("note") or ""))


def climb(tree: Tree, grace: float, until: Callable[[], float | None] | None = None) -> Verdict:
    """Run the ladder over ``tree``; return within about ``grace + FORCE_BUDGET`` seconds.

    ``grace`` 0 skips the ask step (the caller has already waited, or must not).
    ``until``, asked during the grace, may return a monotonic time at which the grace must
    end sooner (the guard's kernel died while it was ending the run for another reason).
    """
    t0 = time.monotonic()
    signalled: set[tuple[int, int]] = set()
    members = tree.members()
    if not members and tree.settled():
        return Verdict(True, False, 0, time.monotonic() - t0, tree.verified_by)
    escalated = grace <= 0
    if not escalated:
        for proc in members.values():
            if proc.signal(signal.SIGTERM):
                signalled.add((proc.pid, proc.start))
            if _SIGCONT is not None:
                proc.signal(_SIGCONT)
        deadline = t0 + grace
        while not tree.settled():
            cap = until() if until is not None else None
            if cap is not None:
                deadline = min(deadline, cap)
            left = deadline - time.monotonic()
            if left <= 0:
                escalated = True
                break
            tree.wait(min(left, POLL))
    if escalated:
        end = time.monotonic() + FORCE_BUDGET
        while True:
            members = tree.members()
            signalled.update((p.pid, p.start) for p in members.values())
            tree.force(members)
            tree.wait(ROUND_WAIT)
            if tree.settled() or time.monotonic() >= end:
                break
    dead = tree.settled()
    survivors: list[tuple[int, str, str]] = []
    if not dead:
        for proc in tree.members().values():
            st = proc.current()
            if st is not None:
                survivors.append((proc.pid, STATE_WORDS.get(st.state, st.state), st.name))
    swept = len(getattr(tree, "swept", ()))
    return Verdict(dead, escalated, len(signalled), time.monotonic() - t0, tree.verified_by, swept,
                   tuple(survivors))


def describe(verdict: Verdict) -> str:
    """One line, for logs."""
    how = "SIGKILL needed" if verdict.escalated else "exited on SIGTERM"
    state = "dead" if verdict.dead else f"{len(verdict.survivors)} survivors"
    return f"{state} ({verdict.signalled} processes, {how}, verified by {verdict.verified_by})"

