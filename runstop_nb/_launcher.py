"""The launch seam: how an agent is started and ended, behind two small protocols.

``Run`` talks only to an :class:`Agent`; ``start()`` picks a :class:`Launcher`. The
backends, each in its own module, like jupyter_client's provisioners:

* ``_local.LocalLauncher`` (the default where ``fork`` exists): each agent under its own
  guard process, forked by the kernel's warden, contained by a cgroup where the machine
  allows it (``RUNSTOP_NB_CONTAINMENT=auto|cgroup|guard``);
* ``_direct.DirectLauncher`` (Windows, or ``RUNSTOP_NB_NO_GUARD=1``): the kernel is the
  agent's parent; weaker guarantees, documented as such;
* a remote backend (Ray) implements the same protocols.

Nothing above this seam knows which backend runs an agent; ``_api.launcher_for`` picks one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from ._logs import LogFiles
from ._proc.ladder import Verdict
from .errors import InvalidSpecError

CONTAINMENT_VAR = "RUNSTOP_NB_CONTAINMENT"
NO_GUARD_VAR = "RUNSTOP_NB_NO_GUARD"
Wanted = Literal["auto", "cgroup", "guard"]
Stdin = Literal["null", "pipe", "pty"]


@dataclass(frozen=True)
class LaunchSpec:
    run_id: str
    argv: tuple[str, ...]
    cwd: str
    env: Mapping[str, str]  # the agent's whole environment, cookie included
    logs: LogFiles
    cookie: str
    grace: float
    started_at: float  # epoch seconds
    containment: Wanted = "auto"
    stdin: Stdin = "null"  # /dev/null, a pipe the kernel writes to, or a terminal (pty mode)


class Agent(Protocol):
    """A started agent, as a run sees it. Events arrive through the ``notify`` callback."""

    pid: int
    containment: str  # "cgroup", "guard" or "none": what holds the tree
    returncode: int | None  # the root's exit status once known, else None
    input_fd: int | None  # the kernel's end of the agent's stdin (pipe or terminal), if any
    records_order: bool  # the backend writes order.idx (else the kernel's tail does)

    def interrupt(self) -> None:
        """Ctrl+C: SIGINT to the agent's foreground process group (not a stop)."""
        ...

    def members(self) -> list[int]:
        """Pids of the tree's live processes (for statistics; may miss a newborn)."""
        ...

    def ended(self) -> Verdict | None:
        """The verdict of a tree that ended by itself (root exited and leftovers were
        stopped, or a dead guard's leftovers were stopped), once there is one."""
        ...

    def lost_reason(self) -> str | None:
        """Why the agent's supervision failed (its guard died), if it did."""
        ...

    def settle(self, grace: float) -> Verdict:
        """The root has exited: make sure the tree is dead (waiting for the backend to
        finish it, or stopping leftovers); return the verdict."""
        ...

    def terminate(self, grace: float) -> Verdict:
        """Stop the whole tree with the one ladder; return what was verified."""
        ...

    def release(self) -> None:
        """The run is over: let go of the backend's resources (waits briefly)."""
        ...


class Launcher(Protocol):
    def launch(self, spec: LaunchSpec, notify: Callable[[], None]) -> Agent: ...


def wanted_containment(value: str | None = None) -> Wanted:
    """The containment asked for, from the argument or ``$RUNSTOP_NB_CONTAINMENT``."""
    raw = (value if value is not None else os.environ.get(CONTAINMENT_VAR, "")).strip().lower() or "auto"
    if raw not in ("auto", "cgroup", "guard"):
        raise InvalidSpecError(f"containment must be auto, cgroup or guard, not {raw!r} "
                               f"(from {CONTAINMENT_VAR})" if value is None else
                               f"containment must be auto, cgroup or guard, not {raw!r}")
    return raw  # type: ignore[return-value]
