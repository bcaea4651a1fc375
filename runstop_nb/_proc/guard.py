"""The guard: the parent of one agent, which ends the agent's whole tree and says so.

The warden forks one guard per run (``serve_run``). The guard reads the run's spec from
its lifeline (a socket whose other end the kernel holds), starts the agent in a new
session (and in the run's cgroup when there is one), reports ``started``, then waits in
``select`` for one of four things:

* the kernel asks it to stop (``stop GRACE``);
* the agent's root exits: the run owns its tree, so leftovers are stopped too;
* the kernel dies: its pidfd turns readable (a fact, not fooled by a forked copy of the
  kernel holding the lifeline open), or the lifeline reaches EOF;
* standalone only (the Ray backend): SIGTERM from whoever started it.

Each ends the same way: the one ladder over this guard's subtree (it is a subreaper, so
"no child left" is a fact), a ``verdict`` line to the kernel and a ``verdict.json`` in the
run's log folder (where the history finds it if the kernel is gone), then exit.

Only the warden's ``kill`` stops a guard from outside; SIGTERM, SIGINT and SIGHUP are
ignored while a kernel owns it, so an agent that runs ``pkill python`` does not end
every run of the kernel. SIGSTOP cannot be ignored: the kernel and the warden continue
a stopped guard (see docs/stopping.md for what still escapes).
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from . import procfs, wire
from .cgroup import Group
from .ladder import Verdict, climb
from .order import OrderRecorder
from .trees import SubreaperTree

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
DEATH_GRACE_CAP = 2.0  # seconds: on kernel death every tree must be dead within 5 s
VERDICT_FILE = "verdict.json"


def prctl(option: int, value: int) -> bool:
    """Linux prctl(2); False where it is unavailable or refused."""
    if sys.platform != "linux":
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(option, value, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


class Guard:
    def __init__(self, sock: socket.socket, kernel_fd: int | None, kernel_pid: int, spec: dict[str, Any],
                 wake_fd: int, *, standalone: bool = False) -> None:
        self.sock = sock
        self.kernel_fd = kernel_fd
        self.kernel_pid = kernel_pid
        self.spec = spec
        self.wake_fd = wake_fd
        self.standalone = standalone
        self.grace = float(spec["grace"])
        self.root = 0
        self.returncode: int | None = None
        self.exit_sent = False
        self.group: Group | None = None
        self.term = False
        self.order: OrderRecorder | None = None
        self.master: int | None = None  # pty mode: the terminal's master side, copied into stdout.log
        self.log_fd: int | None = None  # pty mode: stdout.log, appended to

    # -- messages ---------------------------------------------------------------------

    def send(self, kind: str, body: object) -> None:
        try:
            self.sock.sendall(wire.line(kind, body))
        except OSError:
            pass  # the kernel is gone; its pidfd or EOF tells us

    # -- start ------------------------------------------------------------------------

    def start(self) -> bool:
        """Fork and exec the agent; report ``started`` or ``error``. False if it failed."""
        spec = self.spec
        containment = "guard"
        if spec.get("cgroup"):
            try:
                self.group = Group(spec["cgroup"]).child(spec["run_id"]).make()
            except OSError as e:
                if spec.get("containment") == "cgroup":
                    self.send("error", {"errno": e.errno or 0, "stage": "cgroup", "message": str(e)})
                    return False
        stdin = spec.get("stdin") or "null"
        keep: int | None = None  # the kernel's end of the agent's input, sent with "started"
        child_in: int | None = None
        if stdin == "pty":
            self.master, child_in = os.openpty()
            _size_terminal(child_in, spec.get("pty_size"))
            os.set_blocking(self.master, False)
            self.log_fd = os.open(spec["stdout"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            keep = os.dup(self.master)
        elif stdin == "pipe":
            child_in, keep = os.pipe()
        if spec.get("order"):
            self.order = OrderRecorder(spec["order"], spec["stdout"], spec["stderr"], watch=stdin != "pty")
        err_r, err_w = os.pipe()  # close-on-exec: EOF without data means exec succeeded
        go_r, go_w = os.pipe()  # the child waits until it has been moved into its cgroup
        pid = os.fork()
        if pid == 0:  # the agent; this guard is single-threaded, so fork is safe
            os.close(err_r)
            os.close(go_w)
            _exec_agent(spec, go_r, err_w, child_in, stdin == "pty")  # never returns
        os.close(err_w)
        os.close(go_r)
        if child_in is not None:
            os.close(child_in)  # only the agent holds its side: it sees EOF/hang-up when we let go
        self.root = pid
        if self.group is not None:
            try:
                self.group.join(pid)
                containment = "cgroup"
            except OSError as e:
                self.group.remove()
                self.group = None
                if spec.get("containment") == "cgroup":
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    os.close(go_w)
                    os.close(err_r)
                    if keep is not None:
                        os.close(keep)
                    self.send("error", {"errno": e.errno or 0, "stage": "cgroup", "message": str(e)})
                    return False
        os.write(go_w, b"g")
        os.close(go_w)
        failure = b""
        while chunk := os.read(err_r, 4096):
            failure += chunk
        os.close(err_r)
        if failure:
            os.waitpid(pid, 0)
            self.root = 0
            if keep is not None:
                os.close(keep)
            if self.group is not None:
                self.group.remove()
            errno_, stage, message = ([*failure.decode("utf-8", "replace").split(" ", 2), "", ""])[:3]
            self.send("error", {"errno": int(errno_) if errno_.isdigit() else 0, "stage": stage,
                                "message": message})
            return False
        st = procfs.stat(pid)
        me = procfs.stat(os.getpid())
        body = {"pid": pid, "start": st.start if st else 0, "guard": os.getpid(), "guard_start": me.start if me else 0,
                "containment": containment, "cgroup": self.group.path if self.group else None, "stdin": stdin}
        try:
            socket.send_fds(self.sock, [wire.line("started", body)], [keep] if keep is not None else [])
        except OSError:
            pass
        if keep is not None:
            os.close(keep)
        return True

    def kernel_alive(self) -> bool:
        """Without a pidfd (old Linux, macOS): is the kernel still the process it was?"""
        if self.standalone or not self.kernel_pid:
            return True
        return kernel_alive(self.kernel_pid, int(self.spec.get("kernel_start") or 0))

    # -- reaping ----------------------------------------------------------------------

    def reap(self) -> bool:
        """Reap exited children; True while any child remains."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return False
            if pid == 0:
                return True
            if pid == self.root:
                self.returncode = os.waitstatus_to_exitcode(status)

    def _report_exit(self) -> None:
        if self.returncode is not None and not self.exit_sent:
            self.exit_sent = True
            self.send("exited", {"returncode": self.returncode})

    # -- the agent's terminal and input --------------------------------------------------

    def copy_terminal(self, final: bool = False) -> None:
        """pty mode: copy what the terminal shows into stdout.log (until EOF/EIO when ``final``)."""
        if self.master is None or self.log_fd is None:
            return
        while True:
            try:
                data = os.read(self.master, 1 << 16)
            except BlockingIOError:
                if not final:
                    return
                data = b""
            except OSError:  # EIO: every holder of the terminal's other side has exited
                data = b""
            if not data:
                if final:
                    os.close(self.master)
                    os.close(self.log_fd)
                    self.master = self.log_fd = None
                return
            os.write(self.log_fd, data)
            if self.order is not None:
                self.order.note("stdout", os.fstat(self.log_fd).st_size)

    def interrupt(self) -> None:
        """Ctrl+C: SIGINT to the agent's foreground process group (the terminal's, in pty mode)."""
        pgid = 0
        if self.master is not None:
            try:
                pgid = os.tcgetpgrp(self.master)
            except OSError:
                pgid = 0
        if pgid <= 1 and self.root and self.returncode is None:
            pgid = self.root  # its own session's group; our unreaped child, so not recycled
        if pgid > 1 and pgid != os.getpgid(0):
            try:
                os.killpg(pgid, signal.SIGINT)
            except OSError:
                pass

    # -- the one ending ---------------------------------------------------------------

    def end(self, grace: float, cause: str) -> Verdict:
        """Stop whatever is left of the tree, verified; tell the kernel; leave the verdict on disk."""
        me = os.getpid()
        protect = {me, os.getppid(), self.kernel_pid}
        tree = SubreaperTree(self.reap, self.wake_fd, group=self.group, protect=protect)
        verdict = climb(tree, grace, None if cause == "kernel" else self._kernel_cap())
        self.copy_terminal(final=True)  # every byte written before the end is in the log
        if self.order is not None:
            self.order.close()
        self._report_exit()
        body = {**verdict.to_json(), "cause": cause, "returncode": self.returncode, "ended_at": time.time()}
        self.send("verdict", body)
        _write_verdict(self.spec.get("log_dir"), body)
        if verdict.dead and self.group is not None:
            self.group.remove()
        return verdict

    def _kernel_cap(self) -> Callable[[], float | None]:
        """For a ladder begun for another reason (the root exited, a stop): if the kernel dies
        meanwhile, the grace ends within DEATH_GRACE_CAP of its death, as it would have had
        the kernel died first (every tree dead within 5 s of the kernel's death)."""
        gone: list[float] = []

        def cap() -> float | None:
            if not gone and not self.standalone:
                if self.kernel_fd is not None:
                    dead = bool(select.select([self.kernel_fd], [], [], 0)[0])
                else:
                    dead = not self.kernel_alive()
                if dead:
                    gone.append(time.monotonic() + DEATH_GRACE_CAP)
            return gone[0] if gone else None

        return cap

    def serve(self) -> None:
        """Wait for the one thing that ends this guard, then end the tree and return."""
        lines = wire.Lines()
        watch = [self.sock.fileno(), self.wake_fd]
        if self.kernel_fd is not None:
            watch.append(self.kernel_fd)
        if self.order is not None and self.order.fd is not None:
            watch.append(self.order.fd)
        if self.master is not None:
            watch.append(self.master)
        while True:
            timeout = None if self.kernel_fd is not None or self.standalone else 0.5
            pending = self.order.timeout() if self.order is not None else None
            if pending is not None:
                timeout = pending if timeout is None else min(timeout, pending)
            try:
                ready, _, _ = select.select(watch, [], [], timeout)
            except InterruptedError:
                ready = []
            if self.master is not None and self.master in ready:
                self.copy_terminal()
            if self.order is not None:
                if self.order.fd is not None and self.order.fd in ready:
                    self.order.on_events()
                if self.order.timeout() == 0.0:
                    self.order.flush()
            if self.wake_fd in ready:
                _drain(self.wake_fd)
            self.reap()
            if self.returncode is not None:
                self.end(self.grace, "exit")  # the run owns its tree: leftovers go too (often none)
                return
            if self.sock.fileno() in ready:
                try:
                    data = self.sock.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    if not self.standalone:
                        self.end(min(self.grace, DEATH_GRACE_CAP), "kernel")
                        return
                    watch.remove(self.sock.fileno())
                for kind, body in lines.feed(data):
                    if kind == "stop":
                        self.end(float(body), "stop")
                        return
                    if kind == "interrupt":
                        self.interrupt()
            if (self.kernel_fd in ready) if self.kernel_fd is not None else not self.kernel_alive():
                self.end(min(self.grace, DEATH_GRACE_CAP), "kernel")
                return
            if self.term:
                self.end(self.grace, "signal")
                return


def kernel_alive(pid: int, start: int) -> bool:
    st = procfs.stat(pid)
    if st is not None:
        return st.start == start and not st.dead
    try:
        os.kill(pid, 0)  # no /proc (macOS): the pid alone
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except (BlockingIOError, InterruptedError):
        pass


def _write_verdict(log_dir: str | None, body: dict[str, Any]) -> None:
    if not log_dir:
        return
    path = os.path.join(log_dir, VERDICT_FILE)
    try:
        fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(body, f)
        os.replace(path + ".tmp", path)
    except OSError:
        pass


def _size_terminal(fd: int, size: object) -> None:
    """Give a new terminal a size (CLIs format to it): ``[rows, cols]``, default 40 x 120."""
    import fcntl
    import struct
    import termios

    rows, cols = size if isinstance(size, (list, tuple)) and len(size) == 2 else (40, 120)
    try:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", int(rows), int(cols), 0, 0))
    except OSError:
        pass


def _exec_agent(spec: dict[str, Any], go_fd: int, err_fd: int, child_in: int | None, pty: bool) -> None:
    """In the forked child: become the agent. Reports failures on ``err_fd``; never returns.

    stdin is /dev/null, a pipe the kernel writes to, or (pty mode) a terminal that is also
    its stdout and stderr and its controlling terminal."""
    stage = "setup"
    try:
        os.setsid()  # its own session: the agent's group never includes the guard
        for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE, signal.SIGCHLD, signal.SIGTERM,
                    signal.SIGXFSZ, signal.SIGQUIT, signal.SIGUSR1):
            signal.signal(sig, signal.SIG_DFL)  # ignored dispositions survive exec
        signal.set_wakeup_fd(-1)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        os.read(go_fd, 1)  # moved into the cgroup (if any) before anything runs
        os.close(go_fd)
        if pty and child_in is not None:
            import fcntl
            import termios

            fcntl.ioctl(child_in, termios.TIOCSCTTY, 0)
            for fd in (0, 1, 2):
                os.dup2(child_in, fd)
        else:
            fd_in = child_in if child_in is not None else os.open(os.devnull, os.O_RDONLY)
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
            fd_out = os.open(spec["stdout"], flags, 0o600)
            fd_err = os.open(spec["stderr"], flags, 0o600)
            os.dup2(fd_in, 0)
            os.dup2(fd_out, 1)
            os.dup2(fd_err, 2)
        stage = "cwd"
        os.chdir(spec["cwd"])
        stage = "exec"
        argv = [os.fsencode(a) for a in spec["argv"]]
        env = {os.fsencode(k): os.fsencode(v) for k, v in spec["env"].items()}
        os.execvpe(argv[0], argv, env)
    except OSError as e:
        os.write(err_fd, f"{e.errno or 0} {stage} {e.strerror or e}".encode())
    except BaseException as e:
        os.write(err_fd, f"0 {stage} {type(e).__name__}: {e}".encode())
    finally:
        os._exit(127)


def serve_run(sock: socket.socket, kernel_fd: int | None, kernel_pid: int) -> None:
    """In a guard freshly forked by the warden: run one agent to its verified end."""
    os.setsid()
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda s, f: None)  # the wakeup fd does the work
    me = procfs.stat(os.getpid())
    try:
        # Before anything can stop us (the agent may SIGSTOP its parent at once): who we are,
        # so the kernel can continue us while it waits.
        sock.sendall(wire.line("hello", {"guard": os.getpid(), "guard_start": me.start if me else 0}))
        spec = wire.read_spec(sock)
    except (EOFError, ValueError, OSError):
        return
    if spec.get("log_dir"):  # this guard's own errors, if any, go beside the run's logs
        try:
            fd = os.open(os.path.join(spec["log_dir"], "guard.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(fd, 2)
            os.close(fd)
        except OSError:
            pass
    guard = Guard(sock, kernel_fd, kernel_pid, spec, wake_r)
    if guard.start():
        guard.serve()
