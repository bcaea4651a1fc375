"""Kernel-death matrix: every way a real kernel dies, against four tree shapes at once.

Ways to die: SIGKILL; ``shutdown_kernel(now=True)``; restart; graceful shutdown; nbval's own
teardown (``RunningKernel.stop``, called for real); and the kernel's parent dying, which
makes ipykernel's parent poller call ``os._exit(1)`` (no atexit hook, no finally). Shapes,
all started in the same kernel before it dies: a plain counter, a tree with a setsid'd
child and a double-forked daemon, a TERM-ignorer, and an agent flooding its stdout.
Two hostile shapes join them: a TERM-ignoring 1 ms fork chain that starts a new session
every generation (a scan by cookie can miss it, so its heartbeat file is watched), and an
agent that SIGSTOPs its own guard again and again. Every death runs in both containment
modes (cgroup, guard). Every combination must leave no process carrying any of the runs'
cookies, and no heartbeat, within 5 s of the kernel's death. Last, the guards are SIGKILLed with the kernel, and the janitor (run by
``%load_ext runstop_nb`` in the next kernel) must clean up.

Processes are checked from this process, by exact cookie; nothing the kernel says about
itself is taken on trust. Timings print with ``-s``.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import types
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import psutil
import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.connect import write_connection_file

from .helpers import AGENTS, FORKCHAIN, alive, beats, cookie_alive, kill_pids, wait_for
from .kernel import Kernel, kernel

pytestmark = pytest.mark.kernel

PY = sys.executable
DEATH_LIMIT = 5.0  # seconds from the kernel's death to the last process of every tree
JANITOR = Path(__file__).resolve().parent.parent / "runstop_nb" / "_janitor.py"
# About 10 MB/s of 100-byte lines: a real flood for the tail, without filling the disk.
FLOOD = "import os, time\nchunk = (b'f' * 99 + b'\\n') * 2000\nwhile True:\n    os.write(1, chunk)\n    time.sleep(0.02)\n"
SHAPES = {
    "plain": [PY, str(AGENTS / "counter.py"), "--lines", "100000", "--interval", "0.05"],
    "escapee": [PY, str(AGENTS / "spawner.py"), "--children", "2"],
    "stubborn": [PY, str(AGENTS / "stubborn.py")],
    "flood": [PY, "-c", FLOOD],
}
# Hostile shapes (issue: dead means dead): a TERM-ignoring 1 ms fork chain with a new session
# every generation, beating into a file; and an agent that SIGSTOPs its own guard, so the
# guard cannot act on the kernel's death by itself.
HOSTILE = {
    "forkchain": [PY, FORKCHAIN, "setsid", "{beat}"],
    # again and again: while the kernel lives, its warden continues a stopped guard
    "guard_stopper": ["sh", "-c", "while kill -STOP $PPID; do sleep 0.05; done"],
}
# The parent poller only watches the pid in JPY_PARENT_PID; jupyter_client sets it to the
# launching process (this test). An intermediate parent we can kill makes the death real.
PARENT = """
import os, subprocess, sys
env = dict(os.environ, JPY_PARENT_PID=str(os.getpid()))
kernel = subprocess.Popen([sys.executable, "-m", "ipykernel_launcher", "-f", sys.argv[1]], env=env)
print(kernel.pid, flush=True)
kernel.wait()
"""


class ChildKernel(Kernel):
    """A real kernel whose parent is an intermediate process, not this test."""

    def __init__(self, cwd: Path) -> None:
        conn, _ = write_connection_file(str(cwd / f"kernel-{uuid.uuid4().hex[:8]}.json"),
                                        ip="127.0.0.1", key=uuid.uuid4().hex.encode())
        env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
        with open(cwd / "kernel-stderr.log", "wb") as log:  # never this test's pipes
            self.parent = subprocess.Popen([PY, "-c", PARENT, conn], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                           stdout=subprocess.PIPE, stderr=log, text=True)
        assert self.parent.stdout is not None
        self._pid = int(self.parent.stdout.readline())
        self.kc = BlockingKernelClient()
        self.kc.load_connection_file(conn)
        try:
            self.kc.start_channels()
            self._wait_ready()
        except BaseException:
            self.close()
            raise

    def _wait_ready(self, timeout: float = 60) -> None:
        """kernel_info until both shell and iopub answer (the client's own wait_for_ready
        asks the heartbeat, which a kernel without a manager can fail at start)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.kc.kernel_info()
            try:
                self.kc.get_shell_msg(timeout=1)
                self.kc.get_iopub_msg(timeout=0.5)
            except queue.Empty:
                continue
            while True:  # drop what the extra requests left queued
                try:
                    self.kc.get_iopub_msg(timeout=0.2)
                except queue.Empty:
                    return
        raise TimeoutError(f"the kernel did not answer within {timeout} s; see kernel-stderr.log")

    @property
    def pid(self) -> int:
        return self._pid

    def close(self) -> None:
        self.kc.stop_channels()
        kill_pids([self.parent.pid, self._pid])
        self.parent.wait(10)
        if self.parent.stdout is not None:
            self.parent.stdout.close()


@contextmanager
def child_kernel(cwd: Path) -> Iterator[ChildKernel]:
    k = ChildKernel(cwd)
    try:
        yield k
    finally:
        k.close()


def start_shapes(k: Kernel, beat: Path | None = None) -> dict[str, dict[str, Any]]:
    """Start the four shapes in the kernel (default grace), and the hostile ones when given a
    heartbeat file for the fork chain; wait until each is fully up."""
    shapes = dict(SHAPES)
    if beat is not None:
        shapes.update({n: [a.replace("{beat}", str(beat)) for a in cmd] for n, cmd in HOSTILE.items()})
    k.ok(f"import runstop_nb\nruns = {{n: runstop_nb.start(cmd, name=n) for n, cmd in {shapes!r}.items()}}")
    info: dict[str, dict[str, Any]] = k.eval(
        "{n: dict(cookie=r.spec.cookie, pid=r.pid, guard=r._agent.guard.pid, warden=r._agent._link.pid, "
        "log=str(r.log_dir))"
        " for n, r in runs.items()}")

    def out(name: str) -> bytes:
        return (Path(info[name]["log"]) / "stdout.log").read_bytes()[:4096]

    def escapees() -> list[int]:
        e = info["escapee"]
        return [p for p in cookie_alive(e["cookie"]) if p != e["guard"] and _sid(p) not in (e["pid"], None)]

    wait_for(lambda: b"line" in out("plain"), 20, "the counter's first line")
    wait_for(lambda: b"still here" in out("stubborn"), 20, "the TERM-ignorer's handler")
    wait_for(lambda: os.path.getsize(Path(info["flood"]["log"]) / "stdout.log") > 1 << 20, 20, "the flood")
    wait_for(lambda: len(escapees()) >= 2, 20, "the setsid'd child and the double-forked daemon")
    if beat is not None:
        wait_for(lambda: beats(beat) > 100, 20, "the fork chain's heartbeat")
        guard = psutil.Process(info["guard_stopper"]["guard"])
        wait_for(lambda: guard.status() == psutil.STATUS_STOPPED, 20, "the agent to SIGSTOP its guard")
        assert alive(info["guard_stopper"]["pid"]), "a stopped guard is no reason to stop its agent"
    return info


def _sid(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def survivors(info: dict[str, dict[str, Any]]) -> dict[str, list[int]]:
    found = {name: cookie_alive(i["cookie"]) for name, i in info.items()}
    return {name: pids for name, pids in found.items() if pids}


class Watch:
    """From a thread started before the death: when the kernel died, when each tree's agent
    processes died (its guard aside), and when nothing of any tree, guards included, was left."""

    def __init__(self, kernel_pid: int, info: dict[str, dict[str, Any]], beat: Path | None = None) -> None:
        self.kernel_pid, self.info, self.beat = kernel_pid, info, beat
        self.last_beat = 0.0  # when the fork chain's heartbeat file was last written (wall clock)
        self.kernel_gone_wall = 0.0
        self.kernel_gone: float | None = None
        self.trees_dead: float | None = None
        self.agents: dict[str, float] = {}  # tree name -> when its last agent process died
        self.t0 = time.monotonic()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        self._beats = threading.Thread(target=self._poll_beats, daemon=True)
        self._beats.start()

    def _poll_beats(self) -> None:
        """Its own thread: wait until the chain's heartbeat file has been still for a second,
        then take the time of its last write from the file itself (a scan by cookie can miss
        a 1 ms fork chain, and a busy poller can see a write late; the mtime cannot)."""
        size = -1
        quiet_since = time.monotonic()
        while self.beat is not None and time.monotonic() < self.t0 + 60:
            grown = beats(self.beat)
            if grown != size:
                size, quiet_since = grown, time.monotonic()
            elif self.trees_dead is not None and time.monotonic() - quiet_since > 1.0:
                self.last_beat = self.beat.stat().st_mtime
                return
            time.sleep(0.005)

    def _poll(self) -> None:
        deadline = self.t0 + 60
        while self.trees_dead is None and time.monotonic() < deadline:
            now = time.monotonic()
            if self.kernel_gone is None and not alive(self.kernel_pid):
                self.kernel_gone, self.kernel_gone_wall = now, time.time()
            if self.kernel_gone is not None:
                left = survivors(self.info)
                for name, i in self.info.items():
                    if name not in self.agents and not set(left.get(name, ())) - {i["guard"]}:
                        self.agents[name] = now
                if not left:
                    self.trees_dead = now
            time.sleep(0.01)

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self._thread.join(timeout)
        self._beats.join(max(0.0, deadline - time.monotonic()))


def interrupt_leaves_runs_alone(k: Kernel, info: dict[str, dict[str, Any]], beat: Path | None = None) -> None:
    """Interrupt is not a death: a cell gets KeyboardInterrupt, every agent process lives on."""
    before = {n: set(cookie_alive(i["cookie"])) for n, i in info.items()}
    msg_id = k.kc.execute("import time\nprint('sleeping', flush=True)\ntime.sleep(60)")
    messages = iopub(k, msg_id)
    next(m for m in messages if m["msg_type"] == "stream")  # the cell is inside sleep()
    k.km.interrupt_kernel()
    errors = [m["content"]["ename"] for m in messages if m["msg_type"] == "error"]
    assert errors == ["KeyboardInterrupt"], errors
    for name, pids in before.items():
        if name == "forkchain" and beat is not None:  # a scan by cookie can miss it: its heartbeat cannot
            wait_for(partial(lambda path, size: beats(path) > size, beat, beats(beat)), 5,
                     "the fork chain's heartbeat after the interrupt")
            continue
        if name in HOSTILE:  # the guard stopper's pids change with its sleeps
            assert cookie_alive(info[name]["cookie"]), f"the interrupt killed {name}"
            continue
        gone = pids - set(cookie_alive(info[name]["cookie"]))
        assert not gone, f"the interrupt killed {name} processes {gone}"
    assert k.eval("sorted({r.status for r in runs.values()})") == ["running"]


def iopub(k: Kernel, msg_id: str, timeout: float = 60) -> Iterator[dict[str, Any]]:
    """The cell's iopub messages, up to its idle status; then its shell reply is consumed."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            msg = k.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail("the cell did not finish")
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
        yield msg
    while k.kc.get_shell_msg(timeout=max(1.0, deadline - time.monotonic()))["parent_header"].get("msg_id") != msg_id:
        pass


def nbval_teardown(k: Kernel) -> None:
    """nbval's own RunningKernel.stop (stop_channels, then shutdown_kernel(now=True))."""
    from nbval.kernel import RunningKernel

    RunningKernel.stop(types.SimpleNamespace(kc=k.kc, km=k.km))


DEATHS: dict[str, Callable[[Kernel], None]] = {
    "sigkill": lambda k: psutil.Process(k.pid).send_signal(signal.SIGKILL),
    "shutdown_now": lambda k: k.km.shutdown_kernel(now=True),
    "restart": lambda k: k.km.restart_kernel(now=False),
    "graceful_shutdown": lambda k: k.km.shutdown_kernel(now=False),
    "nbval_teardown": nbval_teardown,
    "parent_death": lambda k: k.parent.kill(),  # type: ignore[attr-defined]
}


@pytest.mark.parametrize("death", list(DEATHS))
def test_every_tree_shape_dies_within_5_s_of_the_kernel(death: str, mode: str, tmp_path: Path,
                                                        runs_home: Path) -> None:
    """Every death, in both containment modes (``mode``), with the hostile shapes too."""
    info: dict[str, dict[str, Any]] = {}
    beat = tmp_path / "chain.beat"
    make = child_kernel if death == "parent_death" else kernel
    try:
        with make(tmp_path) as k:
            info = start_shapes(k, beat)
            if death == "graceful_shutdown":
                interrupt_leaves_runs_alone(k, info, beat)
            counts = {n: len(cookie_alive(i["cookie"])) for n, i in info.items()}
            watch = Watch(k.pid, info, beat)
            DEATHS[death](k)
            returned = time.monotonic() - watch.t0
            watch.wait(DEATH_LIMIT + 30)
            assert watch.kernel_gone is not None, f"{death} ({mode}): the kernel process never died"
            gone = watch.kernel_gone - watch.t0
            if watch.trees_dead is None:
                pytest.fail(f"{death} ({mode}): processes alive 30 s after the kernel died: {survivors(info)}")
            dead = watch.trees_dead - watch.kernel_gone
            agents = {n: round(t - watch.kernel_gone, 2) for n, t in watch.agents.items()}
            print(f"\n{death} ({mode}): call returned +{returned:.2f} s, kernel gone +{gone:.2f} s; agents dead "
                  f"(s after the kernel) {agents}; all {sum(counts.values())} processes, guards included, "
                  f"gone {dead:.2f} s after the kernel")
            chain = watch.last_beat - watch.kernel_gone_wall
            print(f"  the fork chain's last heartbeat: {chain:.2f} s after the kernel")
            assert chain <= DEATH_LIMIT, f"{death} ({mode}): the fork chain beat {chain:.2f} s after the kernel"
            assert dead <= DEATH_LIMIT, f"{death} ({mode}): trees took {dead:.2f} s to die after the kernel"
            if death == "restart":  # the new kernel is usable and starts empty
                k.kc.wait_for_ready(timeout=60)
                assert k.eval("__import__('runstop_nb').runs()") == []
    finally:
        kill_pids([p for i in info.values() for p in cookie_alive(i["cookie"])])
        shutil.rmtree(runs_home / "runs", ignore_errors=True)  # the flood's log is large


@pytest.mark.skipif(not JANITOR.exists(), reason="runstop_nb/_janitor.py is not written yet")
def test_janitor_stops_trees_whose_kernel_guards_and_warden_were_sigkilled(tmp_path: Path, runs_home: Path) -> None:
    info: dict[str, dict[str, Any]] = {}
    try:
        with kernel(tmp_path) as k:
            info = start_shapes(k)
            guards = [psutil.Process(i["guard"]) for i in info.values()]
            guards.append(psutil.Process(next(iter(info.values()))["warden"]))
            # The guards and the warden act on their kernel's death, and a kernel on a
            # guard's: freeze them all, kill the kernel, then them. The trees live on, orphaned.
            for g in guards:
                g.send_signal(signal.SIGSTOP)
            wait_for(lambda: all(g.status() == psutil.STATUS_STOPPED for g in guards), 10, "frozen guards")
            psutil.Process(k.pid).kill()
            wait_for(lambda: not alive(k.pid), 10, "the kernel to die")
            for g in guards:
                g.kill()
            wait_for(lambda: not any(alive(g.pid) for g in guards), 10, "the guards to die")
        orphaned = survivors(info)
        assert set(orphaned) == set(SHAPES), f"every tree must outlive kernel and guard: {orphaned}"
        with kernel(tmp_path) as k2:  # the next kernel of this project
            t0 = time.monotonic()
            said = k2.ok("%load_ext runstop_nb").stdout
            assert "orphaned" in said, f"%load_ext said nothing about the orphans: {said!r}"
            wait_for(lambda: not survivors(info), 15, "the janitor to stop every orphaned tree")
            took = time.monotonic() - t0
            print(f"\njanitor: {sum(map(len, orphaned.values()))} orphaned processes in 4 trees "
                  f"dead {took:.2f} s after %load_ext ({said.strip()})")
            cookies = [i["cookie"] for i in info.values()]
            assert k2.eval(f"__import__('runstop_nb').reap_orphans({cookies!r})") == []
    finally:
        kill_pids([p for i in info.values() for p in cookie_alive(i["cookie"])])
        shutil.rmtree(runs_home / "runs", ignore_errors=True)
