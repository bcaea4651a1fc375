"""Code the benchmarks run inside the kernel: one sample of a metric per call.

Each function times itself with ``perf_counter`` inside the kernel (so client round trips
are not counted) and returns a JSON-able dict. Every runstop sample has a raw baseline
here that runs the *same* child command, so callers can interleave them A/B/A/B.
Whatever a sample starts, it ends before returning, verified, by pid.
"""

from __future__ import annotations

import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import time
from itertools import count
from pathlib import Path
from typing import Any

import psutil

import runstop_nb
from runstop_nb._kernelstate import kernel_state

AGENTS = Path(__file__).resolve().parent.parent / "notebooks" / "agents"
FLOOD = AGENTS / "flood.py"
_ids = count(1)

# bash plus ten sleeps: 11 processes in one group.
COOPERATIVE = "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 1000 & done; wait"
# The same shape, but one sleep ignores SIGTERM (an ignored signal stays ignored across exec).
STUBBORN = "for i in 1 2 3 4 5 6 7 8 9; do sleep 1000 & done; sh -c 'trap \"\" TERM; exec sleep 1000' & wait"


def flood_cmd(lines: int, width: int = 60) -> list[str]:
    return [sys.executable, str(FLOOD), "--lines", str(lines), "--width", str(width)]


def _ip() -> Any:
    from IPython import get_ipython

    return get_ipython()


def _dead(proc: psutil.Process) -> bool:
    try:
        return proc.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return True


def _poll(predicate: Any, timeout: float, what: str, delay: float = 0.0005) -> None:
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"benchmark: timed out after {timeout} s waiting for {what}")
        time.sleep(delay)


def _kill(procs: list[psutil.Process]) -> None:
    for proc in procs:
        try:
            proc.kill()
        except psutil.Error:
            pass


def _check_flood_log(path: Path, lines: int) -> bool:
    """The log holds exactly ``lines`` lines and ends with the last numbered one."""
    newlines = 0
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            newlines += block.count(b"\n")
        f.seek(max(0, os.path.getsize(path) - 200))
        end = f.read().splitlines()
    last = end[-1] if end else b""
    return newlines == lines and (not lines or last.startswith(b"%09d" % (lines - 1)))


# -- P1 / P2: capture ------------------------------------------------------------------------


def _cpu() -> tuple[float, float]:
    """CPU seconds of this kernel (all threads) and of its reaped children (and theirs).

    Guards are the warden's children, not the kernel's: the warden's own CPU and its
    reaped children's (each guard, and through the guard's wait, its agent) count too."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime + _warden_cpu()


def _warden_cpu() -> float:
    link = kernel_state().peek("warden")
    if link is None or not link.pid:
        return 0.0
    try:
        with open(f"/proc/{link.pid}/stat", "rb") as f:
            rest = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in rest[11:15]) / os.sysconf("SC_CLK_TCK")  # utime, stime, cutime, cstime


def capture(mode: str, lines: int, scratch: str) -> dict[str, Any]:
    """Flood ``lines`` lines through one of: widget (%agent_run --wait, displayed), api
    (runstop_nb.start + wait), pipe (Popen, copy its stdout pipe to a file), file (Popen
    writing straight to a file). Time until the run is done, then verify the whole log.

    Also returns the CPU seconds the capture cost: the kernel's own, plus its reaped
    children's, which include the guard and, through the guard's wait, the agent.
    """
    cmd = flood_cmd(lines)
    counted = None
    cpu0 = _cpu()
    t0 = time.perf_counter()
    if mode in ("widget", "api"):
        name = f"p1-{mode}-{next(_ids)}"
        if mode == "widget":
            _ip().run_line_magic("agent_run", f"--wait --name {name} -- {shlex.join(cmd)}")
            run = runstop_nb.get(name)
        else:
            run = runstop_nb.start(cmd, name=name)
            run.wait()
        elapsed = time.perf_counter() - t0
        ok = run.status == "completed"
        counted = run.lines
        path = run.log_dir / "stdout.log"
        guard = run._agent.guard if run._agent is not None else None
        if guard is not None:  # its CPU (and the agent's) counts once the warden has reaped it
            _poll(lambda: guard.current() is None, 5, "the guard to be reaped", delay=0.005)
    else:
        path = Path(scratch) / f"{mode}-{next(_ids)}.log"
        with open(path, "wb") as f:
            if mode == "pipe":
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
                assert proc.stdout is not None
                shutil.copyfileobj(proc.stdout, f, 1 << 16)
            else:
                proc = subprocess.Popen(cmd, stdout=f)
            ok = proc.wait() == 0
        elapsed = time.perf_counter() - t0
    cpu1 = _cpu()
    ok = ok and _check_flood_log(path, lines) and counted in (None, lines)
    if mode in ("widget", "api"):
        shutil.rmtree(path.parent, ignore_errors=True)
    else:
        path.unlink()
    return {"s": elapsed, "ok": ok, "counted": counted,
            "cpu_kernel": cpu1[0] - cpu0[0], "cpu_children": cpu1[1] - cpu0[1]}


def naive_appends(lines: int, width: int = 60) -> dict[str, Any]:
    """The naive widget: display an Output and append_stdout the first ``lines`` lines, one by one."""
    import ipywidgets as w
    from IPython.display import display

    pad = "x" * (width - 11)
    out = w.Output()
    display(out)
    t0 = time.perf_counter()
    for i in range(lines):
        out.append_stdout(f"{i:09d} {pad}\n")
    return {"s": time.perf_counter() - t0}


# -- P3 / P4: stop latency ---------------------------------------------------------------------


def tree_script(n: int, stubborn: bool = False) -> str:
    """bash plus ``n - 1`` sleeps in one group; with ``stubborn``, one sleep ignores SIGTERM."""
    if n == 11:
        return STUBBORN if stubborn else COOPERATIVE
    if stubborn:
        raise ValueError("the stubborn tree has 11 processes")
    return f"for i in $(seq {n - 1}); do sleep 1000 & done; wait"


def containments() -> list[str]:
    """The containment modes this kernel can use: guard always, cgroup where delegated."""
    modes = ["guard"]
    try:
        run = runstop_nb.start(["true"], name=f"probe-{next(_ids)}", containment="cgroup")
    except runstop_nb.StartError:
        return modes
    run.wait(10)
    shutil.rmtree(run.log_dir, ignore_errors=True)
    return ["cgroup", *modes] if run.state().containment == "cgroup" else modes


def stop(mode: str, stubborn: bool, grace: float, containment: str = "auto", n: int = 11) -> dict[str, Any]:
    """Start an n-process tree (default 11), wait until it is complete, stop it; time until
    verified dead. ``containment`` applies to the runstop side (auto, cgroup or guard)."""
    cmd = ["bash", "-c", tree_script(n, stubborn)]
    sleeps = n - 1
    delay = 0.0005 if n <= 20 else 0.01  # polling a big tree's names is itself costly

    def complete(procs: list[psutil.Process]) -> bool:
        try:
            return sum(1 for p in procs if p.name() == "sleep") == sleeps
        except psutil.Error:
            return False

    if mode == "runstop":
        run = runstop_nb.start(cmd, name=f"p3-{next(_ids)}", grace=grace, containment=containment)
        members: list[psutil.Process] = []

        def ready() -> bool:
            nonlocal members
            members = run.members()  # type: ignore[assignment]
            return len(members) == n and complete(members)

        _poll(ready, 30, "the runstop tree", delay)
        t0 = time.perf_counter()
        result = run.stop(grace)
        elapsed = time.perf_counter() - t0
        ok = result.stopped and all(_dead(p) for p in members)
        used = run.state().containment
        shutil.rmtree(run.log_dir, ignore_errors=True)
        return {"s": elapsed, "ok": ok, "escalated": result.escalated, "containment": used}
    proc = subprocess.Popen(cmd, start_new_session=True, stdin=subprocess.DEVNULL)
    root = psutil.Process(proc.pid)
    members = []
    try:
        def raw_ready() -> bool:
            nonlocal members
            members = [root, *root.children(recursive=True)]
            return len(members) == n and complete(members)

        _poll(raw_ready, 30, "the raw tree", delay)
        t0 = time.perf_counter()
        os.killpg(proc.pid, signal.SIGTERM)
        if stubborn:
            time.sleep(grace)
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        _poll(lambda: all(_dead(p) for p in members), 30, "the raw tree to die")
        return {"s": time.perf_counter() - t0, "ok": True, "escalated": stubborn}
    finally:
        _kill(members)
        proc.wait()


# -- P5: time to the first output line --------------------------------------------------------


def first_line(mode: str, marker: str) -> dict[str, Any]:
    """Start ``echo MARKER; sleep``; time until the first line is readable.

    runstop: in the run's log (``run.output()`` sees it), and in the live tail the widget
    renders from (``run.lines``). raw: ``readline()`` on a new-session Popen's pipe.
    """
    cmd = ["sh", "-c", f"echo {marker}; exec sleep 1000"]
    if mode == "runstop":
        t0 = time.perf_counter()
        run = runstop_nb.start(cmd, name=f"p5-{next(_ids)}", grace=0.5)
        started = time.perf_counter() - t0
        log = run.log_dir / "stdout.log"
        t_log = t_tail = None
        while t_tail is None or t_log is None:
            now = time.perf_counter()
            if now - t0 > 10:
                raise TimeoutError("benchmark: no first line from the runstop run within 10 s")
            if t_log is None and log.stat().st_size > 0:
                t_log = now - t0
            if t_tail is None and run.lines > 0:
                t_tail = now - t0
            time.sleep(0.0002)
        result = run.stop()
        shutil.rmtree(run.log_dir, ignore_errors=True)
        return {"s": t_log, "tail_s": t_tail, "started_s": started, "ok": result.stopped}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - t0
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    return {"s": elapsed, "ok": line.strip() == marker.encode()}


def raw_print_first_line(marker: str) -> None:
    """End-to-end baseline: a raw Popen's first line, printed into the cell's output."""
    proc = subprocess.Popen(["sh", "-c", f"echo {marker}; exec sleep 1000"],
                            stdout=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None
    print(proc.stdout.readline().decode(), end="", flush=True)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()


# -- P6 / P7 / P8 helpers ---------------------------------------------------------------------


def start_raw_floods(n: int, scratch: str) -> list[int]:
    """The no-runstop control for P6: the same floods, Popen'd straight into files."""
    for i in range(n):
        with open(Path(scratch) / f"raw-flood-{i}.log", "wb") as f:
            _RAW.append(subprocess.Popen(flood_cmd(10**9), stdout=f, start_new_session=True))
    return [p.pid for p in _RAW]


_RAW: list[subprocess.Popen[bytes]] = []


def stop_raw_floods(scratch: str) -> int:
    """Kill the raw floods (by pid); delete their files; return the bytes they wrote."""
    for proc in _RAW:
        proc.kill()
        proc.wait()
    _RAW.clear()
    written = 0
    for path in Path(scratch).glob("raw-flood-*.log"):
        written += path.stat().st_size
        path.unlink()
    return written


def flood_cell(n: int) -> str:
    """A %%agent_run cell body of ``n`` endless floods."""
    return "\n".join(f"flood{i}: {shlex.join(flood_cmd(10**9))}" for i in range(n))


def start_sleepers(n: int, display: bool) -> dict[str, Any]:
    """Start ``n`` sleeping agents: from one %%agent_run cell (shown in a grid), or through
    the API from a 16-thread pool (as the magic does) and never shown."""
    t0 = time.perf_counter()
    if display:
        _ip().run_cell_magic("agent_run", "", "\n".join(f"sleeper{i}: sleep 3600" for i in range(n)))
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: runstop_nb.start(["sleep", "3600"], name=f"api-sleeper{i}"), range(n)))
    return {"s": time.perf_counter() - t0, **live_runs()}


def stop_all_and_clean() -> dict[str, Any]:
    """Stop every live run; delete every run's logs (floods fill the disk otherwise)."""
    t0 = time.perf_counter()
    results = runstop_nb.stop_all(grace=0.5)
    elapsed = time.perf_counter() - t0
    written = 0
    for run in runstop_nb.runs():
        if run.done and run.log_dir.exists():
            written += sum(f.stat().st_size for f in run.log_dir.glob("std*.log"))
            shutil.rmtree(run.log_dir, ignore_errors=True)
    return {"s": elapsed, "n": len(results), "stopped": sum(r.stopped for r in results), "bytes": written}


def stop_named(name: str) -> None:
    run = runstop_nb.get(name)
    run.stop()
    shutil.rmtree(run.log_dir, ignore_errors=True)


def live_runs() -> dict[str, Any]:
    live = [r for r in runstop_nb.runs() if not r.done]
    guards = []
    for r in live:
        guard = r._agent.guard if r._agent is not None else None
        if guard is not None:
            guards.append(guard.pid)
    return {"n": len(live), "running": sum(r.status == "running" for r in live),
            "pids": [r.pid for r in live], "guards": guards}
