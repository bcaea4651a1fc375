"""The guard: the parent of one agent, which ends the agent's tree when the kernel goes.

The kernel's supervisor thread runs ``python _guard.py KERNEL_PID FD`` (by path, in its own
session), where fd ``FD`` is one end of a Unix socket pair. The kernel sends the agent's spec,
the guard forks and execs the agent in a further new session, and reports back. Then it
sits in ``select`` reaping children until the socket reaches EOF:

* after ``release`` the kernel has verified the tree dead; the guard just exits;
* EOF without ``release`` means the kernel died (SIGKILL, OOM, ``os._exit`` from the
  parent poller, nbval's teardown): the guard runs the stop ladder and exits.

Two independent triggers notice a dead kernel: that lifeline socket, and
``PR_SET_PDEATHSIG`` (SIGTERM), which also covers a forked copy of the kernel holding the
socket open. ``PR_SET_CHILD_SUBREAPER`` makes ``setsid``'d and double-forked descendants
re-parent to the guard, so they stay in its tree where the ladder finds them.

Only ``os, select, signal, socket, sys`` are imported until the kernel dies: an idle guard
costs ~10 MB RSS (~4 MB unique), against ~12 MB with ``subprocess`` and ``json``.

Wire format. Kernel to guard, once: a 10-digit length, then NUL-separated fields
``cwd, stdout_path, stderr_path, grace, started_at, argc, argv..., env K=V...``.
Then optionally ``release``. Guard to kernel, lines: ``started PID``,
``error ERRNO STAGE MESSAGE``, ``exited RETURNCODE``.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
DEATH_GRACE_CAP = 2.0  # seconds: on kernel death the tree must be dead within 5 s


def _prctl(option: int, value: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl failed")


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


class Guard:
    def __init__(self, sock: socket.socket, kernel_pid: int) -> None:
        self.sock = sock
        self.kernel_pid = kernel_pid
        self.root: int | None = None
        self.root_reaped = False
        self.cookie = ""
        self.grace = DEATH_GRACE_CAP
        self.started_at = 0.0
        self.term = False

    def send(self, line: str) -> None:
        try:
            self.sock.sendall(line.encode("utf-8", "replace") + b"\n")
        except OSError:
            pass  # the kernel is gone; EOF handling ends us

    def read_spec(self) -> tuple[str, str, str, list[str], dict[str, str]]:
        size = int(_recv_exact(self.sock, 10))
        fields = _recv_exact(self.sock, size).decode("utf-8", "surrogateescape").split("\0")
        cwd, out, err, grace, started_at, argc = fields[:6]
        n = int(argc)
        argv = fields[6 : 6 + n]
        env = dict(kv.split("=", 1) for kv in fields[6 + n :] if "=" in kv)
        self.grace = min(float(grace), DEATH_GRACE_CAP)
        self.started_at = float(started_at)
        self.cookie = env.get("RUNSTOP_NB_COOKIE", "")
        return cwd, out, err, argv, env

    def spawn(self, cwd: str, out: str, err: str, argv: list[str], env: dict[str, str]) -> None:
        """Fork and exec the agent in a new session; report ``started`` or ``error``."""
        r, w = os.pipe()  # close-on-exec: EOF without data means exec succeeded
        pid = os.fork()
        if pid == 0:  # child: single-threaded guard, so fork is safe here
            stage = "setup"
            try:
                os.close(r)
                os.setsid()
                for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE, signal.SIGCHLD,
                            signal.SIGTERM, signal.SIGXFSZ):
                    signal.signal(sig, signal.SIG_DFL)  # ignored dispositions survive exec
                signal.pthread_sigmask(signal.SIG_SETMASK, set())
                fd_in = os.open(os.devnull, os.O_RDONLY)
                flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
                fd_out = os.open(out, flags, 0o600)
                fd_err = os.open(err, flags, 0o600)
                os.dup2(fd_in, 0)
                os.dup2(fd_out, 1)
                os.dup2(fd_err, 2)
                stage = "cwd"
                os.chdir(cwd)
                stage = "exec"
                os.execvpe(argv[0], argv, env)
            except OSError as e:
                os.write(w, f"{e.errno or 0} {stage} {e.strerror or e}".encode())
            except BaseException as e:
                os.write(w, f"0 {stage} {type(e).__name__}: {e}".encode())
            finally:
                os._exit(127)
        os.close(w)
        failure = b""
        while chunk := os.read(r, 4096):
            failure += chunk
        os.close(r)
        if failure:
            os.waitpid(pid, 0)
            self.send("error " + failure.decode("utf-8", "replace"))
            raise SystemExit(0)
        self.root = pid
        self.send(f"started {pid}")

    def reap(self) -> bool:
        """Reap every exited child; return True while any child remains."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return False
            if pid == 0:
                return True
            if pid == self.root:
                self.root_reaped = True
                self.send(f"exited {os.waitstatus_to_exitcode(status)}")

    def serve(self, wake_fd: int) -> bool:
        """Reap until EOF or SIGTERM. Return True if the kernel released us cleanly."""
        buf = b""
        while not self.term:
            ready, _, _ = select.select([self.sock.fileno(), wake_fd], [], [])
            if wake_fd in ready:
                try:
                    os.read(wake_fd, 512)
                except BlockingIOError:
                    pass
                self.reap()
            if self.sock.fileno() in ready:
                try:
                    data = self.sock.recv(512)
                except OSError:
                    data = b""
                if not data:
                    return buf.strip() == b"release"
                buf += data
        return False

    def end_tree(self) -> None:
        """The kernel is gone: stop the whole tree with the kernel's own ladder."""
        if not self.reap() and not self.cookie:
            return
        if self.root is not None and not self.root_reaped:
            # Ask the agent's group at once: importing psutil and the ladder takes ~0.3 s.
            # The root is our unreaped child, so its pid (the group's id) cannot be recycled.
            for sig in (signal.SIGTERM, signal.SIGCONT):
                try:
                    os.killpg(self.root, sig)
                except OSError:
                    pass
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        import psutil

        from runstop_nb._ladder import Scope, climb, protected_pids

        me = psutil.Process()
        scope = Scope(
            cookie=self.cookie,
            started_at=self.started_at,
            pgid=self.root,
            guard=me,
            protect=protected_pids(),
        )
        climb(scope, self.grace)
        self.reap()


def main() -> None:
    kernel_pid, fd = int(sys.argv[1]), int(sys.argv[2])
    sock = socket.socket(fileno=fd)
    os.set_inheritable(fd, False)
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    if sys.platform == "linux":
        # The parent-death signal fires when the kernel *thread* that spawned us exits;
        # the supervisor thread lives as long as the kernel, so that means the kernel.
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
    guard = Guard(sock, kernel_pid)

    def on_term(signum: int, frame: object) -> None:
        guard.term = True

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGCHLD, lambda s, f: None)  # the wakeup fd does the work
    if os.getppid() != kernel_pid:  # the kernel died before prctl took effect
        return
    try:
        spec = guard.read_spec()
    except (EOFError, ValueError, OSError):
        return
    guard.spawn(*spec)
    released = guard.serve(wake_r)
    if released and not guard.reap():
        os._exit(0)  # the kernel waits for this exit: skip interpreter teardown (~10 ms)
    guard.end_tree()


if __name__ == "__main__":
    main()
