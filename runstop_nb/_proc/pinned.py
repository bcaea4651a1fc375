"""Signals that reach exactly the process that was listed, never a recycled pid.

A pid read from a children file or a cgroup can belong to another process by the time a
signal is sent: its owner exited and was reaped, and the pid was reused. So each signal
goes through a pidfd (Linux >= 5.3): open it, check through /proc that the process it now
names started when the listed one did, then signal the pidfd. If the listed process died
in between, the pidfd names a dead process and the signal fails harmlessly: it can never
land on the newcomer. No pidfd is kept open (a tree of 1,500 would exhaust the fd limit).

Where pidfds are missing (macOS, old Linux) it falls back to ``os.kill`` after the same
start-time check, which leaves a window of microseconds; the docs say so.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

from . import procfs

_HAVE_PIDFD = hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal")


@dataclass(frozen=True)
class Pinned:
    """A process as it was listed: its pid, its start time (ticks after boot) and its name."""

    pid: int
    start: int
    name: str = ""

    @classmethod
    def of(cls, st: procfs.Stat) -> Pinned:
        return cls(st.pid, st.start, st.name)

    @classmethod
    def now(cls, pid: int) -> Pinned | None:
        """The process that holds ``pid`` right now, or None if there is none (or it is a zombie)."""
        st = procfs.stat(pid)
        return None if st is None or st.dead else cls.of(st)

    def current(self) -> procfs.Stat | None:
        """Its stat now, if ``pid`` still names this very process."""
        st = procfs.stat(self.pid)
        return st if st is not None and st.start == self.start else None

    def alive(self) -> bool:
        st = self.current()
        return st is not None and not st.dead

    def signal(self, sig: int) -> bool:
        """Send ``sig`` to this process if it still lives; True if it was delivered."""
        global _HAVE_PIDFD
        if _HAVE_PIDFD:
            try:
                fd = os.pidfd_open(self.pid)
            except ProcessLookupError:
                return False
            except OSError:  # ENOSYS on an old kernel: fall back for good
                _HAVE_PIDFD = False
            else:
                try:
                    if self.current() is None:
                        return False  # recycled: the fd names another process
                    signal.pidfd_send_signal(fd, sig)
                    return True
                except ProcessLookupError:
                    return False
                finally:
                    os.close(fd)
        if self.current() is None:
            return False
        try:
            os.kill(self.pid, sig)
            return True
        except ProcessLookupError:
            return False


def open_pidfd(pid: int, start: int | None = None) -> int | None:
    """A pidfd for ``pid`` (checked against ``start`` when given), to wait on; None if impossible.

    A pidfd turns readable when its process exits, which ``select`` can wait for: the
    warden and the guards watch the kernel this way, and the kernel watches its guards.
    """
    if not _HAVE_PIDFD:
        return None
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    if start is not None:
        st = procfs.stat(pid)
        if st is None or st.start != start:
            os.close(fd)
            return None
    return fd
