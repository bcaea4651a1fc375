"""What "a run's processes" means in each situation, and what says they are all gone.

The ladder (``ladder.climb``) runs over any of these trees. Each answers three questions:
which processes are members now, how to kill them all at once, and whether the tree is
*settled*: nothing of it is left. Where that answer is a fact the operating system states,
no race can fool it; where it is only an observation, the verdict says so.

* ``SubreaperTree``: the processes below a subreaper (a guard, or the warden for the
  orphans of a dead guard). Every descendant that loses its parent is re-parented to the
  subreaper, so "``waitpid`` says I have no children left" is a fact: a fork chain whose
  generations live 1 ms cannot hide from it the way it hides from a snapshot. With a
  cgroup as well, ``populated 0`` must also hold, and ``cgroup.kill`` does the killing.
* ``ScanTree``: no subreaper holds the tree any more (no guard, or the guard and the
  warden are both dead). Members are found from the root's descendants, the exact cookie
  in /proc/*/environ, and the run's cgroup if it has one. With a cgroup, "settled" is the
  cgroup's fact; without one it is an observation (``verified_by="scan"``), and a
  descendant that dropped the cookie (``env -i``) and left the tree can be missed.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Callable, Collection, Iterable
from typing import Protocol

from . import procfs
from .cgroup import Group
from .pinned import Pinned

CTIME_SLACK_TICKS = 2 * procfs.CLK_TCK  # start times are compared with the run's start


class Tree(Protocol):
    verified_by: str

    def members(self) -> dict[int, Pinned]: ...
    def force(self, members: dict[int, Pinned]) -> None: ...
    def settled(self) -> bool: ...
    def wait(self, timeout: float) -> None: ...


def _kill_each(members: dict[int, Pinned]) -> None:
    for proc in members.values():
        proc.signal(signal.SIGKILL)


def _safe_group_kill(group: Group, protect: Collection[int]) -> None:
    """cgroup.kill, unless a protected process was moved into the group (only root can)."""
    if not protect or not set(group.members()) & set(protect):
        group.kill()


class SubreaperTree:
    """The descendants of this process, which is a subreaper.

    ``reap`` reaps exited children and returns True while children it cares about remain
    (the guard: any child; the warden: any child that is not one of its guards). ``skip``
    lists children whose subtrees are not part of the tree (the warden's live guards).
    ``wake_fd`` becomes readable on SIGCHLD (``signal.set_wakeup_fd``).
    """

    def __init__(self, reap: Callable[[], bool], wake_fd: int | None, *, group: Group | None = None,
                 skip: Callable[[], Collection[int]] = frozenset, protect: Collection[int] = ()) -> None:
        self._reap = reap
        self._wake_fd = wake_fd
        self.group = group
        self._skip = skip
        self._protect = protect
        self.verified_by = "cgroup+subreaper" if group is not None else "subreaper"

    def members(self) -> dict[int, Pinned]:
        me = os.getpid()
        skip = set(self._skip())
        found: dict[int, Pinned] = {}
        for kid in procfs.children(me) or ():
            if kid in skip:
                continue
            st = procfs.stat(kid)
            if st is None:
                continue
            if not st.dead:
                found[kid] = Pinned.of(st)
            for pid, sub in procfs.descendants(kid).items():
                found[pid] = Pinned.of(sub)
        if self.group is not None:
            for pid in self.group.members():
                if pid not in found and pid != me:
                    pinned = Pinned.now(pid)
                    if pinned is not None:
                        found[pid] = pinned
        return found

    def force(self, members: dict[int, Pinned]) -> None:
        if self.group is not None:
            _safe_group_kill(self.group, self._protect)
        _kill_each(members)

    def settled(self) -> bool:
        if self._reap():
            return False
        return self.group is None or not self.group.populated()

    def wait(self, timeout: float) -> None:
        if self._wake_fd is None:
            time.sleep(timeout)
            return
        ready, _, _ = select.select([self._wake_fd], [], [], max(0.0, timeout))
        if ready:
            try:
                os.read(self._wake_fd, 4096)
            except (BlockingIOError, InterruptedError):
                pass


class ScanTree:
    """A run's processes found without a subreaper: from its root, its cookie, its cgroup."""

    def __init__(self, cookie: str | None, *, started_at: float = 0.0, root: Pinned | None = None,
                 group: Group | None = None, protect: Collection[int] = (),
                 known: Callable[[], Iterable[Pinned]] = tuple) -> None:
        self.cookie = cookie
        self.root = root
        self.known = known  # processes seen in the tree earlier (adopted by init once their parent died)
        self.group = group
        self.protect = frozenset(protect)
        self._min_start = max(0, int((started_at - procfs.BOOT_TIME) * procfs.CLK_TCK) - CTIME_SLACK_TICKS)
        self.verified_by = "cgroup" if group is not None else "scan"
        self.swept: set[tuple[int, int]] = set()  # found only by the cookie

    def members(self) -> dict[int, Pinned]:
        found: dict[int, Pinned] = {}
        root = self.root
        if root is not None:
            st = root.current()
            if st is not None:
                if not st.dead:
                    found[root.pid] = root
                for pid, sub in procfs.descendants(root.pid).items():
                    found[pid] = Pinned.of(sub)
        for proc in self.known():
            if proc.pid not in found and proc.pid not in self.protect:
                st = proc.current()
                if st is not None and not st.dead:
                    found[proc.pid] = proc
                    for pid, sub in procfs.descendants(proc.pid).items():
                        found.setdefault(pid, Pinned.of(sub))
        extra: list[int] = []
        if self.group is not None:
            extra += self.group.members()
        cookie_hits: list[int] = []
        if self.cookie:
            cookie_hits = procfs.cookie_pids(self.cookie, skip=self.protect)
            extra += cookie_hits
        for pid in extra:
            if pid in found or pid in self.protect:
                continue
            pinned = Pinned.now(pid)
            if pinned is None or pinned.start < self._min_start:
                continue  # started before the run: a recycled pid, never ours
            found[pid] = pinned
            if pid in cookie_hits:
                self.swept.add((pid, pinned.start))
        return {pid: p for pid, p in found.items() if pid not in self.protect}

    def force(self, members: dict[int, Pinned]) -> None:
        if self.group is not None:
            _safe_group_kill(self.group, self.protect)
        _kill_each(members)

    def settled(self) -> bool:
        if self.group is not None and self.group.populated():
            return False
        return not self.members()

    def wait(self, timeout: float) -> None:
        time.sleep(timeout)
