"""The launch seam: how an agent is started and ended, behind a small protocol.

``Run`` talks only to an :class:`Agent`. Today's only backend is :class:`LocalLauncher`,
which puts each agent under its own guard process (see ``_guard.py``). A cluster backend
would implement the same two protocols without changing ``Run``'s callers.

One guard per agent, not one per kernel: a guard is ~4 MB of unique memory and starts
in ~40 ms, and it isolates failures (a crashed guard loses one run, not all of them).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import psutil

from . import _guard
from ._ladder import COOKIE_VAR, OWNER_VAR, LadderOutcome, Scope, climb, is_dead, protected_pids
from ._logs import LogFiles
from ._supervisor import Supervisor
from .errors import CommandNotFoundError, StartError

START_TIMEOUT = 20.0  # seconds for a guard to report the agent started
GUARD_EXIT_TIMEOUT = 2.0  # seconds for a released guard to exit


@dataclass(frozen=True)
class LaunchSpec:
    argv: tuple[str, ...]
    cwd: str
    env: Mapping[str, str]  # the agent's whole environment, cookie included
    logs: LogFiles
    cookie: str
    grace: float
    started_at: float  # epoch seconds


class Agent(Protocol):
    """A started agent, as a run sees it."""

    pid: int
    returncode: int | None  # the root's exit status once it has exited, else None
    lost: bool  # whatever supervised the agent vanished while it ran

    def members(self) -> list[psutil.Process]: ...
    def wait_exit(self, timeout: float) -> None: ...
    def terminate(self, grace: float) -> LadderOutcome: ...
    def release(self) -> None: ...


class Launcher(Protocol):
    def launch(self, spec: LaunchSpec, notify: Callable[[], None]) -> Agent: ...


class GuardedAgent:
    """The kernel's side of one guard: its socket, its messages, the agent's identity."""

    def __init__(self, spec: LaunchSpec, supervisor: Supervisor, notify: Callable[[], None]) -> None:
        self.spec = spec
        self.pid = 0
        self.returncode: int | None = None
        self.lost = False
        self.released = False
        self.guard: psutil.Process | None = None
        self._supervisor = supervisor
        self._notify = notify
        self._started = threading.Event()
        self._exited = threading.Event()
        self._error: str | None = None
        self._buf = b""
        self._closed = False
        self._protect = protected_pids()
        supervisor.call(self._spawn_guard)

    def _spawn_guard(self) -> None:
        """Runs on the supervisor thread (the parent-death signal is per spawning thread).

        Sets ``_sock`` and ``_popen`` before watching the socket: the guard may answer
        before the caller thread could read a returned value."""
        payload = _encode(self.spec)  # fails (if it can) before anything is spawned
        mine, theirs = socket.socketpair()
        fd = theirs.fileno()
        guard_log = os.open(self.spec.logs.dir / "guard.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            popen = subprocess.Popen(
                [sys.executable, _guard.__file__, str(os.getpid()), str(fd)],
                pass_fds=(fd,),
                stdin=subprocess.DEVNULL,
                stdout=guard_log,
                stderr=guard_log,
                start_new_session=True,  # kernel interrupts (killpg of its group) never reach it
                env=self._guard_env(),
                cwd=self.spec.logs.dir,
            )
        finally:
            os.close(guard_log)
            theirs.close()
        self.guard = psutil.Process(popen.pid)
        self._sock, self._popen = mine, popen
        mine.sendall(payload)
        self._supervisor.watch(mine, self._on_readable)

    def _guard_env(self) -> dict[str, str]:
        """The kernel's environment plus the run's markers: the guard carries the cookie
        too, so tools see it, but never the user's overrides (a PYTHONHOME meant for the
        agent must not break the guard's interpreter)."""
        env = dict(os.environ)
        for var in (COOKIE_VAR, OWNER_VAR):
            env[var] = self.spec.env[var]
        return env

    def wait_started(self) -> None:
        """Block until the agent runs; raise StartError if it could not start."""
        if not self._started.wait(START_TIMEOUT):
            self.release()
            raise StartError(f"the guard did not start {self.spec.argv[0]!r} within {START_TIMEOUT:.0f} s; "
                             f"see {self.spec.logs.dir / 'guard.log'}")
        if self._error is not None:
            self._supervisor.call(self._close)
            errno_, stage, message = ([*self._error.split(" ", 2), "", ""])[:3]
            cmd = self.spec.argv[0]
            if stage == "exec" and errno_ == "2":
                found = shutil.which(cmd, path=self.spec.env.get("PATH"))
                if found and os.path.exists(found):
                    raise StartError(f"cannot run {cmd!r}: the interpreter on its #! line ({_shebang(found)}) "
                                     f"was not found")
                raise CommandNotFoundError(f"command not found: {cmd!r}; check the name and PATH")
            if stage == "exec" and errno_ == "13":
                raise StartError(f"permission denied running {cmd!r}; is it executable (chmod +x)?")
            if stage == "cwd":
                raise StartError(f"cannot enter cwd {self.spec.cwd!r}: {message}")
            raise StartError(f"could not start {cmd!r} ({stage}): {message}")

    def _on_readable(self) -> None:
        try:
            data = self._sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._close()
            if self.pid and self.returncode is None and not self.released:
                self.lost = True
            self._started.set()
            self._exited.set()
            self._notify()
            return
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        for raw in lines:
            kind, _, rest = raw.decode("utf-8", "replace").partition(" ")
            if kind == "started":
                self.pid = int(rest)
                self._started.set()
            elif kind == "error":
                self._error = rest
                self._started.set()
            elif kind == "exited":
                self.returncode = int(rest)
                self._exited.set()
                self._notify()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._supervisor.unwatch(self._sock)
        self._sock.close()
        self._supervisor.reap_later(self._popen)

    def wait_exit(self, timeout: float) -> None:
        """Wait (briefly) for the guard to report the root's exit status."""
        self._exited.wait(timeout)

    def scope(self) -> Scope:
        guard = self.guard if self.guard is not None and not is_dead(self.guard) else None
        protect = self._protect | ({guard.pid} if guard else set())
        root = None
        if guard is None and self.pid:
            try:
                root = psutil.Process(self.pid)
            except psutil.Error:
                root = None
        return Scope(self.spec.cookie, self.spec.started_at, self.pid or None, guard, root, frozenset(protect))

    def members(self) -> list[psutil.Process]:
        from ._ladder import snapshot

        return list(snapshot(self.scope()).values())

    def terminate(self, grace: float) -> LadderOutcome:
        return climb(self.scope(), grace)

    def release(self) -> None:
        """Tell the guard the tree is verified dead; it exits without further work."""
        if self.released:
            return
        self.released = True

        def send_release() -> None:
            if not self._closed:
                try:
                    self._sock.sendall(b"release")
                except OSError:
                    pass
                self._close()

        self._supervisor.call(send_release)
        try:
            self._popen.wait(GUARD_EXIT_TIMEOUT)  # it exits at once: nothing is left to reap
        except subprocess.TimeoutExpired:
            pass  # still reaped later by the supervisor; the tree itself is verified dead


def _shebang(path: str) -> str:
    try:
        with open(path, "rb") as f:
            first = f.readline(200).decode("utf-8", "replace").strip()
    except OSError:
        return "unreadable"
    return first if first.startswith("#!") else "none"


def _encode(spec: LaunchSpec) -> bytes:
    fields = [
        spec.cwd,
        str(spec.logs.stdout),
        str(spec.logs.stderr),
        repr(float(spec.grace)),
        repr(float(spec.started_at)),
        str(len(spec.argv)),
        *spec.argv,
        *(f"{k}={v}" for k, v in spec.env.items()),
    ]
    payload = "\0".join(fields).encode("utf-8", "surrogateescape")
    return b"%010d" % len(payload) + payload


class DirectAgent:
    """An agent without a guard: the kernel is its parent. Used where ``fork`` is missing
    (Windows), or when ``RUNSTOP_NB_NO_GUARD=1``.

    Degraded, and documented so: nothing ends the tree if the kernel itself is killed, and
    descendants that leave the tree (re-parented away) are found only by the cookie sweep,
    which needs Linux's /proc. Stop still ends every process of the tree psutil can see;
    the tree is re-snapshotted every tick, so children outlive a dead root in its view.
    """

    def __init__(self, spec: LaunchSpec, supervisor: Supervisor, notify: Callable[[], None]) -> None:
        self.spec = spec
        self.returncode: int | None = None
        self.lost = False
        self.guard: psutil.Process | None = None
        self._notify = notify
        self._supervisor = supervisor
        self._exited = threading.Event()
        self._protect = protected_pids()
        self._popen = supervisor.call(self._spawn)
        self.pid = self._popen.pid
        self.root = psutil.Process(self.pid)
        self._known: dict[int, psutil.Process] = {self.pid: self.root}
        supervisor.add_ticker(self, self._tick)

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
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, **kwargs)
            return popen
        except FileNotFoundError as e:
            raise CommandNotFoundError(f"command not found: {self.spec.argv[0]!r}") from e
        except OSError as e:
            raise StartError(f"could not start {self.spec.argv[0]!r}: {e.strerror or e}") from e
        finally:
            os.close(out)
            os.close(err)

    def _tick(self) -> None:
        try:
            self._known.update((p.pid, p) for p in self.root.children(recursive=True))
        except psutil.Error:
            pass
        if self.returncode is None and self._popen.poll() is not None:
            self.returncode = self._popen.returncode
            self._exited.set()
            self._notify()

    def scope(self) -> Scope:
        pgid = None if sys.platform == "win32" else self.pid
        return Scope(self.spec.cookie, self.spec.started_at, pgid, None, self.root, self._protect)

    def members(self) -> list[psutil.Process]:
        from ._ladder import snapshot

        found = snapshot(self.scope())
        found.update((pid, p) for pid, p in self._known.items() if not is_dead(p))
        return list(found.values())

    def wait_exit(self, timeout: float) -> None:
        try:
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return
        self._tick()

    def terminate(self, grace: float) -> LadderOutcome:
        extra = {pid: p for pid, p in self._known.items() if not is_dead(p)}
        for proc in extra.values():  # descendants of an exited root, seen on earlier ticks
            try:
                proc.terminate()
            except psutil.Error:
                pass
        return climb(self.scope(), grace)

    def release(self) -> None:
        self._supervisor.remove_ticker(self)
        self._supervisor.reap_later(self._popen)


class DirectLauncher:
    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def launch(self, spec: LaunchSpec, notify: Callable[[], None]) -> DirectAgent:
        return DirectAgent(spec, self.supervisor, notify)


def launcher_for(supervisor: Supervisor) -> Launcher:
    """The guarded launcher wherever fork exists; the direct, degraded one elsewhere."""
    if hasattr(os, "fork") and os.environ.get("RUNSTOP_NB_NO_GUARD") != "1":
        return LocalLauncher(supervisor)
    return DirectLauncher(supervisor)


class LocalLauncher:
    """Starts each agent on this machine under its own guard process."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def launch(self, spec: LaunchSpec, notify: Callable[[], None]) -> GuardedAgent:
        agent = GuardedAgent(spec, self.supervisor, notify)
        agent.wait_started()
        return agent
