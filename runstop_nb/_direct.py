"""The direct backend: no guard, the kernel is the agent's parent.

Used where ``fork`` is missing (Windows), or when ``RUNSTOP_NB_NO_GUARD=1``. Degraded, and
documented so: nothing outlives the kernel to end the tree if the kernel itself is
killed, and "dead" is an observation (``verified_by="scan"``), not a fact: on Linux the
root's descendants plus the exact cookie in /proc/*/environ, so a descendant that both
left the tree and dropped the cookie (``env -i`` plus a double fork) is missed. Elsewhere,
psutil's view of the tree, re-read every tick so children outlive a dead root in it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable

from ._launcher import LaunchSpec
from ._proc import procfs
from ._proc.ladder import Verdict, climb
from ._proc.pinned import Pinned
from ._proc.trees import ScanTree
from ._supervisor import Supervisor, supervisor
from .errors import CommandNotFoundError, StartError


class DirectAgent:
    """An agent without a guard; its tree is found by scanning."""

    containment = "none"
    records_order = False

    def __init__(self, spec: LaunchSpec, sup: Supervisor, notify: Callable[[], None]) -> None:
        self.spec = spec
        self.returncode: int | None = None
        self.guard: Pinned | None = None
        self._notify = notify
        self._sup = sup
        self._verdict: Verdict | None = None
        self._lock = threading.Lock()
        self._protect = {os.getpid(), *procfs.ancestors(os.getpid())}
        if spec.stdin == "pty":
            raise StartError("pty mode needs the guarded backend (Linux, without RUNSTOP_NB_NO_GUARD=1)")
        self._popen = sup.call(self._spawn)
        self.pid = self._popen.pid
        self.input_fd: int | None = None
        if self._popen.stdin is not None:
            self.input_fd = os.dup(self._popen.stdin.fileno())
            os.set_blocking(self.input_fd, False)
            self._popen.stdin.close()
        self.root = Pinned.now(self.pid)
        self._known: dict[int, Pinned] = {} if self.root is None else {self.pid: self.root}
        sup.add_ticker(self, self._tick)

    def _spawn(self) -> subprocess.Popen[bytes]:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        out = os.open(self.spec.logs.stdout, flags, 0o600)
        err = os.open(self.spec.logs.stderr, flags, 0o600)
        kwargs: dict[str, object] = (
            {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined]
            if sys.platform == "win32" else {"start_new_session": True})
        try:
            popen: subprocess.Popen[bytes] = subprocess.Popen(  # type: ignore[call-overload]
                list(self.spec.argv), cwd=self.spec.cwd, env=dict(self.spec.env),
                stdin=subprocess.PIPE if self.spec.stdin == "pipe" else subprocess.DEVNULL,
                stdout=out, stderr=err, **kwargs)
            return popen
        except FileNotFoundError as e:
            raise CommandNotFoundError(f"command not found: {self.spec.argv[0]!r}") from e
        except OSError as e:
            raise StartError(f"could not start {self.spec.argv[0]!r}: {e.strerror or e}") from e
        finally:
            os.close(out)
            os.close(err)

    def _tick(self) -> None:
        """Supervisor thread: remember the tree while the root lives; notice its exit."""
        if self.returncode is None:
            for pid, st in procfs.descendants(self.pid).items():
                self._known.setdefault(pid, Pinned.of(st))
            if self._popen.poll() is not None:
                self.returncode = self._popen.returncode
                self._notify()

    def _tree(self) -> ScanTree:
        return ScanTree(self.spec.cookie, started_at=self.spec.started_at, root=self.root,
                        protect=self._protect, known=lambda: list(self._known.values()))

    def members(self) -> list[int]:
        return list(self._tree().members())

    def ended(self) -> Verdict | None:
        return self._verdict

    def interrupt(self) -> None:
        """SIGINT to the agent's group (its own session), while its root lives."""
        if self.root is not None and self.root.alive() and hasattr(os, "killpg"):
            try:
                os.killpg(self.pid, signal.SIGINT)
            except OSError:
                pass

    def lost_reason(self) -> str | None:
        return None

    def settle(self, grace: float) -> Verdict:
        return self.terminate(grace)

    def terminate(self, grace: float) -> Verdict:
        with self._lock:
            if self._verdict is None or not self._verdict.dead:
                self._verdict = climb(self._tree(), grace)
            return self._verdict

    def release(self) -> None:
        self._sup.remove_ticker(self)
        self._sup.reap_later(self._popen)


class DirectLauncher:
    def launch(self, spec: LaunchSpec, notify: Callable[[], None]) -> DirectAgent:
        return DirectAgent(spec, supervisor(), notify)
