"""The local backend: each agent under its own guard, forked by this kernel's warden.

::

    kernel ── supervisor thread: spawns the warden, watches every socket, continues stopped guards
     └─ warden     one per kernel; forkserver; subreaper of last resort; acts when the kernel dies
         └─ guard  one per run; subreaper; runs the ladder; states the verdict
             └─ agent   own session; in the run's cgroup where the machine allows

The kernel never signals an agent itself while its guard or the warden can: it asks the
guard (``stop GRACE``) and waits for the verdict. If the guard does not answer in time
(an agent SIGSTOPped it again and again, or it hangs), the kernel kills the guard, and the
warden, as subreaper, ends what the guard left. Only if the warden is gone too does the
kernel fall back to its own scan (cookie, root, cgroup), and the verdict then says so.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ._kernelstate import kernel_state
from ._launcher import LaunchSpec
from ._proc import cgroup, procfs, wire
from ._proc.cgroup import Group
from ._proc.guard import DEATH_GRACE_CAP
from ._proc.ladder import FORCE_BUDGET, Verdict, climb
from ._proc.pinned import Pinned, open_pidfd
from ._proc.trees import ScanTree
from ._proc.warden import boot_code
from ._supervisor import Supervisor, supervisor
from .errors import CommandNotFoundError, StartError

log = logging.getLogger("runstop_nb")
START_TIMEOUT = 20.0  # seconds for a guard to report that the agent started
GUARD_EXIT_TIMEOUT = 2.0  # seconds for a finished guard to exit
TAKEOVER_SLACK = 0.5  # seconds beyond grace + force budget before the kernel takes over
ORPHANS_TIMEOUT = DEATH_GRACE_CAP + FORCE_BUDGET + 1.0  # seconds for the warden to end a dead guard's tree
CONT_EVERY = 0.05  # seconds: how often a guard is checked (and continued) while a stop waits
WATCH_GUARDS_EVERY = 2.0  # seconds: how often every guard and the warden are checked for SIGSTOP
ROLE_VAR = "RUNSTOP_NB_ROLE"


def _owner() -> str:
    st = procfs.stat(os.getpid())
    start = procfs.start_epoch(st) if st else time.time()
    return f"{os.getpid()}:{start:.3f}"


def _stopped(proc: Pinned | None) -> bool:
    st = proc.current() if proc is not None else None
    return st is not None and st.state in ("T", "t")


class WardenLink:
    """This kernel's warden: started from the supervisor thread, watched on its socket."""

    def __init__(self, sup: Supervisor) -> None:
        self._sup = sup
        self._lock = threading.Lock()
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {}
        self._early: dict[str, dict[str, Any]] = {}  # orphans messages that beat their registration
        self.guards: dict[str, Pinned] = {}  # run id -> guard, for the SIGSTOP watch
        self.group: Group | None = None
        self.group_reason = ""
        self.pid = 0
        self.proc: Pinned | None = None
        self._sock: socket.socket | None = None
        self._popen: subprocess.Popen[bytes] | None = None
        self._next_watch = 0.0
        sup.call(self._start)

    @property
    def alive(self) -> bool:
        return self._sock is not None and self._popen is not None and self._popen.poll() is None

    def _start(self) -> None:
        """Supervisor thread: prepare this kernel's cgroup where possible, start the warden.

        The group is prepared whatever containment is asked for now: each run chooses its
        own (``containment=``), and an empty group costs nothing."""
        prepared = cgroup.prepare(os.getpid())
        if isinstance(prepared, Group):
            self.group = prepared
        else:
            self.group_reason = prepared
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(os.environ, **{ROLE_VAR: "warden", procfs.OWNER_VAR: _owner()})
        try:
            popen = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", boot_code(), str(os.getpid()), str(theirs.fileno()),
                 self.group.path if self.group else ""],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                start_new_session=True, env=env, cwd="/",  # its own session: kernel interrupts never reach it
            )
        finally:
            theirs.close()
        self._popen, self._sock, self.pid = popen, mine, popen.pid
        self.proc = Pinned.now(popen.pid)
        self._sup.watch(mine, self._on_readable)
        self._sup.add_ticker(self, self._watch_guards, every=WATCH_GUARDS_EVERY)

    def spawn(self, meta: dict[str, Any], lifeline: int) -> None:
        sock = self._sock
        if sock is None:
            raise StartError("runstop_nb's warden process is gone; retry (a new one starts)")
        with self._lock:
            socket.send_fds(sock, [wire.line("spawn", meta)], [lifeline])

    def expect_orphans(self, run_id: str, handler: Callable[[dict[str, Any]], None]) -> None:
        with self._lock:
            self._handlers[run_id] = handler
            early = self._early.pop(run_id, None)
        if early is not None:
            handler(early)

    def forget(self, run_id: str) -> None:
        with self._lock:
            self._handlers.pop(run_id, None)
            self._early.pop(run_id, None)
            self.guards.pop(run_id, None)

    def _on_readable(self) -> None:
        sock = self._sock
        assert sock is not None
        try:
            data = sock.recv(1 << 16)
        except OSError:
            data = b""
        if not data:  # the warden died (killed by someone): the next start makes a new one
            log.warning("runstop_nb: the warden process (pid %s) died; a new one starts with the next run", self.pid)
            self._sup.unwatch(sock)
            self._sup.remove_ticker(self)
            sock.close()
            self._sock = None
            if self._popen is not None:
                self._sup.reap_later(self._popen)
            return
        kind, body = wire.parse(data.rstrip(b"\n"))
        if kind == "orphans" and isinstance(body, dict):
            with self._lock:
                handler = self._handlers.get(str(body.get("run_id")))
                if handler is None:
                    self._early[str(body.get("run_id"))] = body
            if handler is not None:
                handler(body)

    def _watch_guards(self) -> None:
        """Every few seconds: continue a guard (or the warden) that an agent SIGSTOPped."""
        now = time.monotonic()
        if now < self._next_watch:
            return
        self._next_watch = now + WATCH_GUARDS_EVERY
        with self._lock:
            procs = [*self.guards.values(), *([self.proc] if self.proc else [])]
        for proc in procs:
            if _stopped(proc):
                log.warning("runstop_nb: process %s (%s) was stopped (SIGSTOP); continuing it", proc.pid, proc.name)
                proc.signal(signal.SIGCONT)

    def protected(self) -> set[int]:
        return {os.getpid(), *procfs.ancestors(os.getpid()), self.pid, *(p.pid for p in self.guards.values())}


def warden_link() -> WardenLink:
    """This kernel's warden (started on first use, again if it died)."""
    sup = supervisor()
    return kernel_state().service("warden", lambda: WardenLink(sup), lambda link: link.alive)


class GuardedAgent:
    """The kernel's side of one guard: its lifeline, its messages, the agent's identity."""

    def __init__(self, spec: LaunchSpec, link: WardenLink, sup: Supervisor, notify: Callable[[], None]) -> None:
        self.spec = spec
        self.pid = 0
        self.root: Pinned | None = None
        self.guard: Pinned | None = None
        self.containment = "guard"
        self.cgroup: str | None = None
        self.returncode: int | None = None
        self.input_fd: int | None = None
        self.records_order = True
        self._link = link
        self._sup = sup
        self._notify = notify
        self._started = threading.Event()
        self._ended = threading.Event()
        self._verdict: Verdict | None = None
        self._lost: str | None = None
        self._error: dict[str, Any] | None = None
        self._lines = wire.Lines()
        self._closed = False
        self._note = ""
        want = spec.containment
        if want == "cgroup" and link.group is None:
            raise StartError(f"cgroup containment was asked for, but {link.group_reason}; "
                             f"use containment auto or guard")
        mine, theirs = socket.socketpair()
        self._sock = mine
        meta = {"run_id": spec.run_id, "grace": spec.grace, "log_dir": str(spec.logs.dir),
                "cgroup": link.group.path if link.group is not None and want != "guard" else None}
        link.expect_orphans(spec.run_id, self._on_orphans)
        try:
            link.spawn(meta, theirs.fileno())
        except OSError as e:
            mine.close()
            link.forget(spec.run_id)
            raise StartError(f"could not reach runstop_nb's warden process ({e}); retry") from e
        finally:
            theirs.close()
        st = procfs.stat(os.getpid())
        payload = wire.encode_spec({
            "run_id": spec.run_id, "argv": list(spec.argv), "cwd": spec.cwd, "env": dict(spec.env),
            "stdout": str(spec.logs.stdout), "stderr": str(spec.logs.stderr), "log_dir": str(spec.logs.dir),
            "grace": spec.grace, "started_at": spec.started_at, "cgroup": meta["cgroup"],
            "containment": want, "kernel_start": st.start if st else 0,
            "order": str(spec.logs.order), "stdin": spec.stdin,
        })
        sup.call(lambda: sup.watch(mine, self._on_readable))
        try:
            mine.sendall(payload)
        except OSError:
            pass  # the guard died before reading: wait_started reports it

    # -- events (supervisor thread) ----------------------------------------------------

    def _on_readable(self) -> None:
        try:
            data, fds, _flags, _addr = socket.recv_fds(self._sock, 1 << 16, 1)
        except OSError:
            data, fds = b"", []
        for fd in fds:  # the agent's stdin (a pipe, or its terminal), sent with "started"
            os.set_inheritable(fd, False)
            os.set_blocking(fd, False)
            if self.input_fd is None:
                self.input_fd = fd
            else:
                os.close(fd)
        if not data:
            self._close()
            if not self._ended.is_set() and self._started.is_set() and self._error is None:
                self._lost = "the run's guard process died"  # the warden's verdict follows
            self._started.set()
            self._notify()
            return
        for kind, body in self._lines.feed(data):
            if kind == "hello":
                self.guard = Pinned(int(body["guard"]), int(body["guard_start"]), "guard")
                self._link.guards[self.spec.run_id] = self.guard
            elif kind == "started":
                self.pid = int(body["pid"])
                self.root = Pinned(self.pid, int(body["start"]))
                self.guard = Pinned(int(body["guard"]), int(body["guard_start"]), "guard")
                self.containment = str(body["containment"])
                self.cgroup = body.get("cgroup")
                self._link.guards[self.spec.run_id] = self.guard
                self._started.set()
            elif kind == "error":
                self._error = body
                self._started.set()
            elif kind == "exited":
                self.returncode = int(body["returncode"])
                self._notify()
            elif kind == "verdict":
                self._finish_with(body)

    def _on_orphans(self, body: dict[str, Any]) -> None:
        self._lost = self._lost or "the run's guard process died"
        self._finish_with(body)

    def _finish_with(self, body: dict[str, Any]) -> None:
        if self._ended.is_set():
            return
        if body.get("returncode") is not None and self.returncode is None:
            self.returncode = int(body["returncode"])
        verdict = Verdict.from_json(body)
        self._verdict = replace(verdict, note=self._note) if self._note else verdict
        self._ended.set()
        self._notify()

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self._sup.unwatch(self._sock)
            self._sock.close()

    # -- the Agent protocol ------------------------------------------------------------

    def wait_started(self) -> None:
        """Block until the agent runs; raise StartError if it could not start.

        An agent may SIGSTOP its guard the moment it runs, before the guard reports it:
        a stopped guard is continued while this waits."""
        deadline = time.monotonic() + START_TIMEOUT
        while not self._started.wait(CONT_EVERY) and time.monotonic() < deadline:
            if _stopped(self.guard):
                self.guard.signal(signal.SIGCONT)  # type: ignore[union-attr]
        if not self._started.is_set():
            self._sup.call(self._close)
            self._link.forget(self.spec.run_id)
            raise StartError(f"the guard did not start {self.spec.argv[0]!r} within {START_TIMEOUT:.0f} s")
        if self._error is None and self.root is None:
            self._link.forget(self.spec.run_id)
            raise StartError(f"the guard of {self.spec.argv[0]!r} died before starting it; retry")
        if self._error is not None:
            self._sup.call(self._close)
            self._link.forget(self.spec.run_id)
            raise _start_error(self.spec, self._error)

    def members(self) -> list[int]:
        guard = self.guard
        if guard is not None and guard.alive():
            return list(procfs.descendants(guard.pid))
        if self.cgroup:
            return Group(self.cgroup).members()
        return procfs.cookie_pids(self.spec.cookie)

    def ended(self) -> Verdict | None:
        return self._verdict if self._ended.is_set() else None

    def interrupt(self) -> None:
        if not self._closed:
            try:
                self._sock.sendall(wire.line("interrupt", None))
            except OSError:
                pass

    def lost_reason(self) -> str | None:
        return self._lost

    def settle(self, grace: float) -> Verdict:
        if self._ended.wait(grace + FORCE_BUDGET + TAKEOVER_SLACK):
            assert self._verdict is not None
            return self._verdict
        return self.terminate(grace)

    def terminate(self, grace: float) -> Verdict:
        """Ask the guard to stop the tree; if it cannot, take over. Returns the verdict."""
        if self._ended.is_set():
            assert self._verdict is not None
            return self._verdict
        t0 = time.monotonic()
        deadline = t0 + grace + FORCE_BUDGET + TAKEOVER_SLACK
        guard = self.guard
        if guard is not None and guard.alive() and not self._closed:
            if _stopped(guard):
                self._note = "its guard had been stopped (SIGSTOP), probably by the agent; it was continued"
            guard.signal(signal.SIGCONT)
            try:
                self._sock.sendall(wire.line("stop", grace))
            except OSError:
                pass
            while not self._ended.wait(CONT_EVERY) and time.monotonic() < deadline:
                if _stopped(guard):  # stopped again: keep it going
                    self._note = "its guard was stopped (SIGSTOP) during the stop, probably by the agent"
                    guard.signal(signal.SIGCONT)
        if self._ended.is_set():
            assert self._verdict is not None
            return self._verdict
        # The guard is dead, hung or kept stopped: kill it; the warden ends what it leaves.
        if guard is not None and guard.signal(signal.SIGKILL):
            self._note = self._note or "its guard did not answer in time and was killed"
        if self._link.alive and self._ended.wait(ORPHANS_TIMEOUT):
            assert self._verdict is not None
            return self._verdict
        return self._fallback(max(0.0, grace - (time.monotonic() - t0)))

    def _fallback(self, grace: float) -> Verdict:
        """Guard and warden are both gone: the kernel's own scan (cookie, root, cgroup)."""
        tree = ScanTree(self.spec.cookie, started_at=self.spec.started_at, root=self.root,
                        group=Group(self.cgroup) if self.cgroup else None, protect=self._link.protected())
        verdict = climb(tree, grace)
        note = "its guard and the warden were gone; the kernel stopped the tree itself"
        self._verdict = replace(verdict, note=note)
        self._ended.set()
        if verdict.dead and self.cgroup:
            Group(self.cgroup).remove()
        return self._verdict

    def release(self) -> None:
        """The run is over: wait (briefly) for the guard to exit; forget it."""
        guard = self.guard
        self._link.forget(self.spec.run_id)
        self._sup.call(self._close)
        if guard is None:
            return
        fd = open_pidfd(guard.pid, guard.start)
        if fd is None:
            return
        try:
            select.select([fd], [], [], GUARD_EXIT_TIMEOUT)  # readable once it has exited
        finally:
            os.close(fd)


def _start_error(spec: LaunchSpec, error: dict[str, Any]) -> StartError:
    import shutil

    errno_, stage, message = int(error.get("errno") or 0), str(error.get("stage")), str(error.get("message"))
    cmd = spec.argv[0]
    if stage == "exec" and errno_ == 2:
        found = shutil.which(cmd, path=spec.env.get("PATH"))
        if found and os.path.exists(found):
            return StartError(f"cannot run {cmd!r}: the interpreter on its #! line ({_shebang(found)}) was not found")
        return CommandNotFoundError(f"command not found: {cmd!r}; check the name and PATH")
    if stage == "exec" and errno_ == 13:
        return StartError(f"permission denied running {cmd!r}; is it executable (chmod +x)?")
    if stage == "cwd":
        return StartError(f"cannot enter cwd {spec.cwd!r}: {message}")
    if stage == "cgroup":
        return StartError(f"cannot put {cmd!r} in its cgroup ({message}); use containment auto or guard")
    return StartError(f"could not start {cmd!r} ({stage}): {message}")


def _shebang(path: str) -> str:
    try:
        with open(path, "rb") as f:
            first = f.readline(200).decode("utf-8", "replace").strip()
    except OSError:
        return "unreadable"
    return first if first.startswith("#!") else "none"


class LocalLauncher:
    """Starts each agent on this machine under its own guard, forked by the warden."""

    def launch(self, spec: LaunchSpec, notify: Callable[[], None]) -> GuardedAgent:
        link = warden_link()
        agent = GuardedAgent(spec, link, supervisor(), notify)
        agent.wait_started()
        return agent


def start_warden_early() -> None:
    """Start the warden now, so the first run does not wait for it (``%load_ext``)."""
    try:
        warden_link()
    except Exception as e:  # never break the extension's load; the first run retries
        log.debug("runstop_nb: could not start the warden early: %s", e)
