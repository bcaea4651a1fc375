"""Real-kernel acceptance tests: interrupts, every kind of kernel death, durable logs, reloads.

Each test drives a real IPython kernel through jupyter_client (tests/kernel.py) and checks
processes from *this* process, by the run's exact cookie, so nothing the kernel says about
itself is taken on trust. Timings are printed (run with ``-s`` to see them); the only timed
asserts are the acceptance limits (tree dead within 5 s of kernel death, an interrupted
``wait()`` raising within 2 s).
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from .helpers import AGENTS, alive, cookie_alive, kill_pids, wait_for
from .kernel import Kernel, kernel

pytestmark = pytest.mark.kernel

PY = sys.executable
PACKAGE = Path(__file__).resolve().parent.parent / "runstop_nb"
SPAWNER = str(AGENTS / "spawner.py")
STUBBORN = str(AGENTS / "stubborn.py")
# sh + spawner (2 plain sleeps, a setsid'd sleep, a double-forked setsid daemon) + a
# TERM-ignorer: 7 live processes carry the run's cookie (the guard, forked by the warden, does not).
TREE = f"{PY} {SPAWNER} --children 2 & {PY} {STUBBORN} & wait"
TREE_SIZE = 7
DEATH_LIMIT = 5.0  # seconds: the acceptance limit for a tree to die after its kernel
ANSI = re.compile(r"\x1b\[[0-9;]*m")


# -- helpers --------------------------------------------------------------------------


def launch(k: Kernel, var: str, cmd: object, **kw: object) -> dict[str, Any]:
    """Start a run in the kernel as ``var``; return what the test process needs to know."""
    k.ok(f"import runstop_nb\n{var} = runstop_nb.start({cmd!r}, **{kw!r})")
    info: dict[str, Any] = k.eval(
        f"dict(id={var}.id, name={var}.name, pid={var}.pid, cookie={var}.spec.cookie, "
        f"guard={var}._agent.guard.pid, log=str({var}.log_dir))"
    )
    return info


def wait_tree(info: dict[str, Any], timeout: float = 20.0) -> list[int]:
    """Wait until the whole TREE is up (TERM handler installed); return its live pids."""
    out = Path(info["log"]) / "stdout.log"
    root_sid = os.getsid(info["pid"])

    def escapees() -> list[int]:
        """Tree members outside the root's session (the guard aside): killpg misses them."""
        found = []
        for pid in cookie_alive(info["cookie"]):
            try:
                if pid != info["guard"] and os.getsid(pid) != root_sid:
                    found.append(pid)
            except OSError:
                continue
        return found

    def ready() -> bool:
        text = out.read_bytes()
        return (b"spawned" in text and b"still here" in text
                and len(cookie_alive(info["cookie"])) >= TREE_SIZE
                and len(escapees()) >= 2)  # the setsid'd sleep and the daemon (it setsids late)

    wait_for(ready, timeout, "the agent tree (with a setsid'd child and a daemon) to start")
    return cookie_alive(info["cookie"])


def cleanup(info: dict[str, Any] | None) -> None:
    """Kill whatever is left of a run, by exact cookie, from this process (guard included).

    Not through the kernel: after a failure it may be dead, busy, or unable to stop."""
    if info is not None:
        kill_pids(cookie_alive(info["cookie"]))


def synced(k: Kernel) -> Kernel:
    """Consume the shell replies that ``wait_for_ready`` leaves queued.

    ``wait_for_ready`` re-sends kernel_info each second until iopub answers, so on a busy
    machine extra kernel_info replies stay queued, and ``Kernel.run`` (which takes the next
    shell message whatever its parent) would pair each cell with an earlier reply. The
    kernel answers shell requests in order, so every stale reply comes before ours.
    """
    msg_id = k.kc.kernel_info()
    deadline = time.monotonic() + 60
    while True:
        reply = k.kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
        if reply["parent_header"].get("msg_id") == msg_id:
            return k


def collect(k: Kernel, msg_id: str, until_stdout: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
    """Consume a cell's messages until its stdout shows ``until_stdout``, or else until it
    finishes (then its shell reply too); return its error and when that arrived."""
    deadline = time.monotonic() + timeout
    out: dict[str, Any] = {"ename": None, "traceback": "", "error_at": None, "stdout": ""}
    while until_stdout is None or until_stdout not in out["stdout"]:
        try:
            msg = k.kc.get_iopub_msg(timeout=max(0.01, min(deadline - time.monotonic(), 1.0)))
        except queue.Empty:
            if time.monotonic() > deadline:
                pytest.fail(f"the cell did not get there in {timeout} s; it printed {out['stdout']!r}")
            continue
        kind, content = msg["msg_type"], msg["content"]
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if kind == "stream":
            out["stdout"] += content["text"]
        elif kind == "error":
            out.update(error_at=time.monotonic(), ename=content["ename"],
                       traceback=ANSI.sub("", "\n".join(content["traceback"])))
        elif kind == "status" and content["execution_state"] == "idle":
            break
    else:
        return out
    while k.kc.get_shell_msg(timeout=max(1.0, deadline - time.monotonic()))["parent_header"].get("msg_id") != msg_id:
        pass
    if until_stdout is not None:
        pytest.fail(f"the cell ended without printing {until_stdout!r}: {out}")
    return out


class DeathWatch:
    """Polls, from a thread started before the kill, when the kernel and the tree die."""

    def __init__(self, kernel_pid: int, cookie: str) -> None:
        self.kernel_pid, self.cookie = kernel_pid, cookie
        self.kernel_gone: float | None = None
        self.tree_dead: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> DeathWatch:
        self.t0 = time.monotonic()
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set() and (self.tree_dead is None or self.kernel_gone is None):
            now = time.monotonic()
            if self.kernel_gone is None and not alive(self.kernel_pid):
                self.kernel_gone = now
            if self.tree_dead is None and not cookie_alive(self.cookie):
                self.tree_dead = now  # the guard acts on the kernel's pidfd: this can be the same poll
            time.sleep(0.005)

    def wait(self, timeout: float) -> None:
        self._thread.join(timeout)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def check_log_prefix(path: Path, expected: bytes) -> tuple[int, int]:
    """The log must be a byte prefix of what the agent meant to write.

    So every newline-terminated line is exactly its numbered line, in order from 0, with no
    gap and no garbage; only the last, unterminated fragment may be short (the kill landed
    inside a write), and it must be the start of the next line. Returns (complete lines,
    length of the partial fragment).
    """
    data = path.read_bytes()
    assert data, "the log is empty"
    assert len(data) < len(expected), "the agent finished before the kill: nothing was tested"
    if data != expected[: len(data)]:
        bad = next(i for i, (a, b) in enumerate(zip(data, expected, strict=False)) if a != b)
        line = data.count(b"\n", 0, bad)
        raise AssertionError(f"log differs from the expected numbered lines at byte {bad} (line {line}): "
                             f"{data[max(0, bad - 40):bad + 40]!r}")
    complete = data.count(b"\n")
    partial = len(data) - (data.rfind(b"\n") + 1)
    assert complete > 0, "no complete line reached the log"
    return complete, partial


# -- kernels ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    """One kernel for the tests that leave it alive (interrupts, reloads).

    It imports a fresh copy of the package (PYTHONPATH comes before the editable install),
    so the autoreload test can touch module files without touching the shared checkout.
    """
    root = tmp_path_factory.mktemp("shared")
    pkg = root / "pkg"
    shutil.copytree(PACKAGE, pkg / "runstop_nb", ignore=shutil.ignore_patterns("__pycache__"))
    env = {
        "RUNSTOP_NB_HOME": str(root / "home"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(pkg), os.environ.get("PYTHONPATH")])),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    with kernel(root, env) as k:
        synced(k)
        where = k.eval("__import__('runstop_nb').__file__")
        assert where.startswith(str(pkg)), where
        k.pkg = pkg / "runstop_nb"  # type: ignore[attr-defined]
        yield k
        # Nothing any test started may outlive the module.
        k.run("pass", stop_on_error=False)  # lets a kernel still aborting after an error settle
        cookies = k.eval("[r.spec.cookie for r in __import__('runstop_nb').runs()]")
    left = [p for c in cookies for p in cookie_alive(c)]
    kill_pids(left)
    assert not left, f"runs of the shared kernel left processes alive: {left}"


# -- interrupts ---------------------------------------------------------------------------


def test_interrupt_during_a_cell_leaves_the_agent_tree_running(shared: Kernel) -> None:
    k, info = shared, None
    try:
        info = launch(k, "r_int", TREE, shell=True, name="interrupted")
        before = set(wait_tree(info))
        msg_id = k.kc.execute("import time\nprint('sleeping', flush=True)\ntime.sleep(30)")
        collect(k, msg_id, "sleeping")
        t0 = time.monotonic()
        k.km.interrupt_kernel()
        reply = collect(k, msg_id)
        assert reply["ename"] == "KeyboardInterrupt", reply
        print(f"\ninterrupt -> KeyboardInterrupt in {reply['error_at'] - t0:.3f} s")
        gone = before - set(cookie_alive(info["cookie"]))
        assert not gone, f"the interrupt killed agent processes: {gone}"
        assert alive(info["pid"])
        assert k.eval("r_int.status") == "running"
        assert k.eval("r_int.pid") == info["pid"]
        assert k.eval("sum(range(10))") == 45  # the kernel is usable
        res = k.eval("(lambda s: (s.stopped, s.reason))(r_int.stop(grace=0.5))")
        assert res == (True, "stopped")
        assert not cookie_alive(info["cookie"])
    finally:
        cleanup(info)


def test_interrupt_during_wait_raises_promptly_and_leaves_the_agent(shared: Kernel) -> None:
    k, info = shared, None
    try:
        info = launch(k, "r_wait", TREE, shell=True, name="waited")
        before = set(wait_tree(info))
        msg_id = k.kc.execute("print('waiting', flush=True)\nr_wait.wait()")
        collect(k, msg_id, "waiting")
        time.sleep(0.5)  # let the cell get from print() into wait(); the traceback proves it did
        t0 = time.monotonic()
        k.km.interrupt_kernel()
        reply = collect(k, msg_id)
        assert reply["ename"] == "KeyboardInterrupt", reply
        assert re.search(r"_run\.py.*, in (Run\.)?wait\(", reply["traceback"]), reply["traceback"]
        took = reply["error_at"] - t0
        print(f"\ninterrupted wait() raised after {took:.3f} s")
        assert took < 2.0, f"wait() took {took:.2f} s to raise KeyboardInterrupt"
        assert k.eval("r_wait.status") == "running"  # the API itself must not stop it
        gone = before - set(cookie_alive(info["cookie"]))
        assert not gone, f"the interrupt killed agent processes: {gone}"
        assert k.eval("r_wait.wait(0.2)") == "running"  # and waiting again works
    finally:
        cleanup(info)


# -- kernel death --------------------------------------------------------------------------


def _kill(k: Kernel, mode: str) -> None:
    if mode == "sigkill":
        psutil.Process(k.pid).send_signal(signal.SIGKILL)
    elif mode == "shutdown_now":  # also nbval's and nbclient's teardown
        k.km.shutdown_kernel(now=True)
    elif mode == "restart":
        k.km.restart_kernel()
    elif mode == "graceful":
        k.km.shutdown_kernel(now=False)


@pytest.mark.parametrize("mode", ["sigkill", "shutdown_now", "restart", "graceful"])
def test_kernel_death_kills_the_whole_tree_within_5_s(mode: str, tmp_path: Path) -> None:
    info = None
    try:
        with kernel(tmp_path) as k:
            synced(k)
            info = launch(k, "r", TREE, shell=True, name="doomed")
            pids = wait_tree(info)
            with DeathWatch(k.pid, info["cookie"]) as watch:
                _kill(k, mode)
                called = time.monotonic() - watch.t0
                watch.wait(DEATH_LIMIT + 10)
            assert watch.kernel_gone is not None, "the old kernel process never died"
            gone = watch.kernel_gone - watch.t0
            if watch.tree_dead is None:
                pytest.fail(f"{mode}: still alive 15 s after the kernel died: {cookie_alive(info['cookie'])}")
            dead = watch.tree_dead - watch.t0
            print(f"\n{mode}: call returned +{called:.3f} s, kernel gone +{gone:.3f} s, "
                  f"all {len(pids)} processes dead +{dead:.3f} s ({dead - gone:.3f} s after the kernel)")
            assert dead - gone <= DEATH_LIMIT
            if mode == "restart":  # the new kernel works
                k.kc.wait_for_ready(timeout=60)
                synced(k)
                assert k.eval("6 * 7") == 42
    finally:
        cleanup(info)


def test_log_keeps_a_gap_free_prefix_when_the_kernel_is_sigkilled_mid_run(tmp_path: Path) -> None:
    """200,000 numbered lines (flood.py's format), written slowly enough that the kill
    lands mid-run: each batch of 1,000 goes out in two writes split inside a line, with a
    pause after each, so the kill often leaves an unterminated partial line."""
    n, batch, pad = 200_000, 1000, "x" * 49
    agent = tmp_path / "slow_flood.py"
    agent.write_text(
        "import sys, time\n"
        f"n, batch, pad = {n}, {batch}, {pad!r}\n"
        "for start in range(0, n, batch):\n"
        "    text = ''.join(f'{i:09d} {pad}\\n' for i in range(start, min(n, start + batch)))\n"
        "    cut = len(text) // 2 + 7\n"
        "    for part in (text[:cut], text[cut:]):\n"
        "        sys.stdout.write(part)\n"
        "        time.sleep(0.01)\n"
    )
    expected = b"".join(f"{i:09d} {pad}\n".encode() for i in range(n))
    info = None
    try:
        with kernel(tmp_path) as k:
            synced(k)
            info = launch(k, "r", [PY, str(agent)], name="flood")
            log = Path(info["log"]) / "stdout.log"
            wait_for(lambda: log.stat().st_size >= 20_000 * 60, 30, "20,000 lines in the log")
            with DeathWatch(k.pid, info["cookie"]) as watch:
                psutil.Process(k.pid).send_signal(signal.SIGKILL)
                watch.wait(DEATH_LIMIT + 10)
            assert watch.tree_dead is not None and watch.kernel_gone is not None, cookie_alive(info["cookie"])
            assert watch.tree_dead - watch.kernel_gone <= DEATH_LIMIT
        complete, partial = check_log_prefix(log, expected)
        print(f"\nflood: {complete} complete lines (0..{complete - 1}), partial tail {partial} bytes, "
              f"tree dead {watch.tree_dead - watch.t0:.3f} s after SIGKILL")
        assert (Path(info["log"]) / "stderr.log").read_bytes() == b""
    finally:
        cleanup(info)


# -- reloads -----------------------------------------------------------------------------

CHECK_SAME = """
import runstop_nb
_g = runstop_nb.get({name!r})
_same = (_g.id, _g.pid, _g.status, [x.id for x in runstop_nb.runs()])
"""

STOP_IT = """
_res = runstop_nb.get({name!r}).stop(grace=1.0)
_stop = (_res.stopped, _res.reason, _res.status)
"""

FRESH = """
_f = runstop_nb.start([{py!r}, {spawner!r}, '--children', '1'], name={name!r})
_fresh = (_f.status, runstop_nb.get({name!r}) is _f, _f.spec.cookie)
"""


def check_after_reload(k: Kernel, info: dict[str, Any], fresh_name: str) -> None:
    """The acceptance checks once code was reloaded: same run, listed, stoppable, new starts."""
    k.ok(CHECK_SAME.format(name=info["name"]))
    run_id, pid, status, listed = k.eval("_same")
    assert (run_id, pid, status) == (info["id"], info["pid"], "running")
    assert info["id"] in listed
    k.ok(STOP_IT.format(name=info["name"]))
    assert k.eval("_stop") == (True, "stopped", "cancelled")
    assert not cookie_alive(info["cookie"]), "stop() said stopped, but the tree lives"
    k.ok(FRESH.format(py=PY, spawner=SPAWNER, name=fresh_name))
    status, found, cookie = k.eval("_fresh")
    try:
        assert (status, found) == ("running", True)
        wait_for(lambda: len(cookie_alive(cookie)) >= 4, 20, "the fresh run's tree")
        k.ok(STOP_IT.format(name=fresh_name))
        assert k.eval("_stop") == (True, "stopped", "cancelled")
        assert not cookie_alive(cookie)
    finally:
        kill_pids(cookie_alive(cookie))


# The long-lived threads every run relies on (tailing, guard messages, history, widgets).
SERVICE_THREADS = ("sorted((t.name, t.ident) for t in __import__('threading').enumerate() "
                   "if t.name in ('runstop-supervisor', 'runstop-history', 'runstop-renderer'))")

RELOAD_ALL = """
import importlib, sys
_mods = sorted(m for m in sys.modules if m.startswith('runstop_nb.'))
_old_run = sys.modules['runstop_nb._run'].Run
for _m in _mods:
    importlib.reload(sys.modules[_m])
importlib.reload(sys.modules['runstop_nb'])
_reloaded = (_mods, sys.modules['runstop_nb._run'].Run is not _old_run)
"""


def test_registry_survives_importlib_reload_of_every_module(shared: Kernel) -> None:
    k, info = shared, None
    try:
        info = launch(k, "r_imp", [PY, SPAWNER, "--children", "1"], name="reloaded")
        threads = k.eval(SERVICE_THREADS)
        k.ok(RELOAD_ALL)
        assert k.eval(SERVICE_THREADS) == threads, "a runstop_nb background thread died in the reload"
        mods, fresh_class = k.eval("_reloaded")
        assert fresh_class, "importlib.reload did not re-create the Run class"
        assert {"runstop_nb._registry", "runstop_nb._run", "runstop_nb._lifecycle"} <= set(mods)
        check_after_reload(k, info, "fresh-imp")
    finally:
        cleanup(info)


def test_a_run_started_before_a_reload_still_ends_by_itself(shared: Kernel, tmp_path: Path) -> None:
    flag = tmp_path / "go"
    code = f"import os, time\nwhile not os.path.exists({str(flag)!r}): time.sleep(0.02)"
    k, info = shared, None
    try:
        info = launch(k, "r_nat", [PY, "-c", code], name="natural")
        k.ok(RELOAD_ALL)
        flag.touch()
        assert k.eval("r_nat.wait(20)") == "completed"
        assert k.eval("r_nat.returncode") == 0
        assert not cookie_alive(info["cookie"])
    finally:
        cleanup(info)


# What ``%autoreload`` (superreload) does to each module it reloads: empty its namespace,
# then re-run it. Here the empty spell lasts 0.6 s instead of a few ms, so a background
# thread that looks up a global of its module in that spell surely does so.
EMPTY_EACH = """
import sys, time
for _name in ('runstop_nb._supervisor', 'runstop_nb._recorder', 'runstop_nb._renderer'):
    _mod = sys.modules.get(_name)
    if _mod is None:
        continue
    _saved = dict(_mod.__dict__)
    _mod.__dict__.clear()
    _mod.__dict__.update(__name__=_saved['__name__'], __loader__=_saved['__loader__'])
    try:
        time.sleep(0.6)
    finally:
        _mod.__dict__.update(_saved)
"""


def test_background_threads_outlive_a_module_being_emptied_by_autoreload(tmp_path: Path) -> None:
    info = None
    try:
        with kernel(tmp_path) as k:  # its own kernel: a failure here must not spread
            synced(k)
            info = launch(k, "r_empty", [PY, SPAWNER, "--children", "1"], name="emptied")
            threads = k.eval(SERVICE_THREADS)
            assert "runstop-supervisor" in {name for name, _ in threads}
            k.ok(EMPTY_EACH)
            assert k.eval(SERVICE_THREADS) == threads, "a runstop_nb background thread died"
            check_after_reload(k, info, "fresh-empty")
    finally:
        cleanup(info)


@pytest.mark.parametrize("flags", ["", "--full"], ids=["autoreload2", "autoreload2-full"])
def test_registry_survives_autoreload_of_touched_modules(shared: Kernel, flags: str) -> None:
    k, info = shared, None
    pkg: Path = k.pkg  # type: ignore[attr-defined]
    try:
        info = launch(k, "r_auto", [PY, SPAWNER, "--children", "1"], name=f"auto{flags.strip('-')}")
        k.ok(f"%load_ext autoreload\n%autoreload 2 {flags} --print")
        k.ok("pass")  # autoreload records each module's mtime on the first cell it sees
        threads = k.eval(SERVICE_THREADS)
        for round_ in range(1, 4):  # each reload is a chance to hit a background thread mid-way
            files = list(pkg.glob("*.py"))
            later = max(time.time(), *(f.stat().st_mtime for f in files)) + 5  # always newer
            for path in files:
                os.utime(path, (later, later))
            reply = k.ok("pass")  # autoreload runs before this cell
            reloaded = set(re.findall(r"Reloading '([\w.]+)'", reply.stdout))
            assert {"runstop_nb._registry", "runstop_nb._run", "runstop_nb._lifecycle"} <= reloaded, (round_, reply.stdout, reply.stderr)
        assert k.eval(SERVICE_THREADS) == threads, "a runstop_nb background thread died in the reload"
        check_after_reload(k, info, f"fresh-auto{flags.strip('-')}")
    finally:
        try:
            k.run("%autoreload 0")
        finally:
            cleanup(info)


@pytest.mark.skipif(not (PACKAGE / "_magics.py").exists(), reason="runstop_nb/_magics.py is not written yet")
def test_registry_survives_reload_ext(shared: Kernel) -> None:
    k, info = shared, None
    try:
        k.ok("%load_ext runstop_nb")
        info = launch(k, "r_ext", [PY, SPAWNER, "--children", "1"], name="extended")
        # reload_ext re-executes the package's __init__ (which rebinds __all__): clear it to see that.
        k.ok("import runstop_nb\nrunstop_nb.__all__ = []\n%reload_ext runstop_nb")
        assert k.eval("len(runstop_nb.__all__) > 0"), "%reload_ext did not reload the package"
        check_after_reload(k, info, "fresh-ext")
    finally:
        cleanup(info)
