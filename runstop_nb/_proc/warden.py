"""The warden: one per kernel. It forks the guards, and ends what a dead guard left behind.

The kernel starts it once (``python -I -S -c …``, its own session, standard library only)
and keeps a control socket to it. Three jobs:

* **forkserver**: on ``spawn`` it forks a guard for a new run (about 1 ms, against ~40 ms
  for a fresh interpreter), handing it the lifeline the kernel sent along.
* **subreaper of last resort**: it is a subreaper, so when a guard dies early (an agent
  ran ``kill -9 $PPID``), that guard's tree, ``env -i`` and double-forked escapees
  included, is re-parented to the warden. It then runs the ladder over its non-guard
  children (plus the run's cgroup, if any) until none is left, and tells the kernel.
* **the kernel's executor**: it watches the kernel through a pidfd. When the kernel dies
  it continues every guard (an agent may have SIGSTOPped its guard, which would leave the
  guard's wake-up pending for ever), gives them ``PATIENCE`` seconds to end their trees
  themselves, then kills any guard that did not and ends the rest: its subreaper tree,
  and ``cgroup.kill`` on the kernel's whole group. Then it removes the groups and exits.

It ignores SIGTERM, SIGINT and SIGHUP (``pkill python`` from an agent must not end every
run); it exits when the kernel is gone and nothing of it is left.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

from . import guard, pinned, procfs, wire
from .cgroup import Group
from .ladder import climb
from .trees import SubreaperTree

PATIENCE = 2.6  # seconds: a guard's capped grace (2 s) plus its force rounds, then it is killed
CONT_EVERY = 0.1  # seconds: how often stopped guards are continued while the kernel is gone


@dataclass
class GuardInfo:
    pid: int
    run_id: str
    grace: float
    log_dir: str | None
    cgroup: str | None  # the run's group, if the run is contained in one


class Warden:
    def __init__(self, control: socket.socket, kernel_pid: int, kernel_fd: int | None,
                 kernel_start: int, group: Group | None, wake_fd: int) -> None:
        self.control = control
        self.kernel_pid = kernel_pid
        self.kernel_fd = kernel_fd
        self.kernel_start = kernel_start
        self.group = group
        self.wake_fd = wake_fd
        self.guards: dict[int, GuardInfo] = {}
        self.dead_guards: list[tuple[GuardInfo, int]] = []  # (guard, wait status) to handle

    # -- children ---------------------------------------------------------------------

    def reap(self) -> bool:
        """Reap exited children, noting dead guards; True while a non-guard child remains."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            info = self.guards.pop(pid, None)
            if info is not None and not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
                self.dead_guards.append((info, status))
        return any(kid not in self.guards for kid in procfs.children(os.getpid()) or ())

    def spawn(self, meta: dict[str, Any], lifeline: int) -> None:
        """Fork a guard for one run; it reads the run's spec from ``lifeline``."""
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                self.control.close()
                os.close(self.wake_fd)
                guard.serve_run(socket.socket(fileno=lifeline), self.kernel_fd, self.kernel_pid)
            except BaseException:
                code = 1
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(lifeline)
        cgroup = meta.get("cgroup")
        self.guards[pid] = GuardInfo(pid, str(meta["run_id"]), float(meta["grace"]), meta.get("log_dir"),
                                     os.path.join(cgroup, str(meta["run_id"])) if cgroup else None)

    def end_orphans(self, info: GuardInfo | None, grace: float) -> None:
        """A guard died before its tree was dead: end what it left, verified, and say so."""
        me = os.getpid()
        group = Group(info.cgroup) if info is not None and info.cgroup and os.path.isdir(info.cgroup) else None
        tree = SubreaperTree(self.reap, self.wake_fd, group=group, skip=lambda: set(self.guards),
                             protect={me, self.kernel_pid, *self.guards})
        verdict = climb(tree, grace)
        if info is None:
            return
        body = {**verdict.to_json(), "cause": "guard_lost", "returncode": None, "ended_at": time.time(),
                "run_id": info.run_id, "guard": info.pid}
        guard._write_verdict(info.log_dir, body)
        if group is not None and verdict.dead:
            group.remove()
        try:
            self.control.send(wire.line("orphans", body))
        except OSError:
            pass

    def handle_dead_guards(self) -> None:
        while self.dead_guards:
            info, _status = self.dead_guards.pop(0)
            self.end_orphans(info, min(info.grace, guard.DEATH_GRACE_CAP))

    # -- the loop ---------------------------------------------------------------------

    def serve(self) -> None:
        watch = [self.control.fileno(), self.wake_fd]
        if self.kernel_fd is not None:
            watch.append(self.kernel_fd)
        while True:
            timeout = None if self.kernel_fd is not None else 0.5
            try:
                ready, _, _ = select.select(watch, [], [], timeout)
            except InterruptedError:
                ready = []
            if self.wake_fd in ready:
                _drain(self.wake_fd)
            if self.reap() and not self.dead_guards:
                self.end_orphans(None, 0)  # a non-guard child with no dead guard to blame: kill it
            self.handle_dead_guards()
            if self.control.fileno() in ready:
                try:
                    data, fds, _flags, _addr = socket.recv_fds(self.control, 1 << 16, 4)
                except OSError:
                    data, fds = b"", []
                if not data:
                    break  # the kernel closed its end: it is exiting or dead
                for fd in fds:
                    os.set_inheritable(fd, False)
                kind, body = wire.parse(data.rstrip(b"\n"))
                if kind == "spawn" and fds:
                    self.spawn(body, fds[0])
                    fds = fds[1:]
                for fd in fds:
                    os.close(fd)
            gone = (self.kernel_fd in ready) if self.kernel_fd is not None else not guard.kernel_alive(
                self.kernel_pid, self.kernel_start)
            if gone:
                break
        self.kernel_gone()

    def kernel_gone(self) -> None:
        """The kernel is gone: see every tree of it dead, then remove its groups and exit."""
        deadline = time.monotonic() + PATIENCE
        while self.guards and time.monotonic() < deadline:
            for info in list(self.guards.values()):
                _signal_child(info.pid, signal.SIGCONT)  # a stopped guard's wake-up is pending
            self.reap()
            self.handle_dead_guards()
            ready, _, _ = select.select([self.wake_fd], [], [], CONT_EVERY)
            if ready:
                _drain(self.wake_fd)
        for info in list(self.guards.values()):
            _signal_child(info.pid, signal.SIGKILL)  # stopped again, or hung: its tree is ours now
        if self.group is not None:
            self.group.kill()
        while self.guards:
            self.reap()
            self.handle_dead_guards()
            if self.guards:
                time.sleep(0.005)
        self.end_orphans(None, 0)
        if self.group is not None:
            self.group.remove()


def _signal_child(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)  # our own unreaped child: its pid cannot have been recycled
    except ProcessLookupError:
        pass


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except (BlockingIOError, InterruptedError):
        pass


def main() -> None:
    """Entry point: ``python -I -S -c BOOT KERNEL_PID CONTROL_FD [KERNEL_CGROUP]``."""
    kernel_pid, control_fd = int(sys.argv[1]), int(sys.argv[2])
    group = Group(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3] else None
    control = socket.socket(fileno=control_fd)
    os.set_inheritable(control_fd, False)
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)
    guard.prctl(guard.PR_SET_CHILD_SUBREAPER, 1)
    # The kernel's pidfd is the fact of its death. Opened, then checked: while we are still
    # its child, the pid cannot have been recycled, so the fd names the kernel.
    kernel_fd = pinned.open_pidfd(kernel_pid)
    if os.getppid() != kernel_pid:
        return  # the kernel died before we looked
    kst = procfs.stat(kernel_pid)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda s, f: None)
    warden = Warden(control, kernel_pid, kernel_fd, kst.start if kst else 0, group, wake_r)
    try:
        control.send(wire.line("ready", {"pid": os.getpid()}))
    except OSError:
        return
    warden.serve()


def boot_code() -> str:
    """The ``-c`` program that starts a warden with only this package on the path."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return f"import sys; sys.path.insert(0, {json.dumps(here)}); from _proc.warden import main; main()"
