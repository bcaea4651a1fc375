"""Soak and chaos: randomized start/stop cycles over hostile process trees, with figures.

One command runs it: ``.venv/bin/python -m pytest -m soak -s tests/test_soak.py``.
``RUNSTOP_SOAK_CYCLES`` sets the number of cycles (default 40, about a minute here: the short
version in the default test run); ``make soak`` runs 500. ``RUNSTOP_SOAK_SEED`` replays a
seed (the figures print the one used; timing still varies from run to run).

Each cycle starts one run (three at most for ``stop_all``) of a random tree shape, with a
random grace and a random containment (a cgroup where the machine allows it, or the guard
alone), stops it at a random moment by a random route, and checks at once that
nothing carrying the run's cookie is left. Canaries run the very same command lines with
other cookies and record every catchable signal they receive; a sibling run (its own guard)
does the same. Then 50 runs are started and stopped from 8 threads.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import psutil
import pytest

import runstop_nb
from runstop_nb import StopResult
from runstop_nb._proc import procfs
from runstop_nb._registry import registry
from runstop_nb._supervisor import supervisor

from .helpers import cookie_alive, kill_pids, wait_for

CYCLES = int(os.environ.get("RUNSTOP_SOAK_CYCLES") or 40)
SEED = int(os.environ.get("RUNSTOP_SOAK_SEED") or random.SystemRandom().randrange(1 << 31))
CONCURRENT_RUNS, THREADS = 50, 8
LATENCY_SLACK = 5.0  # seconds a stop may take beyond its grace on this loaded 2-core machine
PY = sys.executable

pytestmark = [pytest.mark.soak, pytest.mark.timeout(max(180, 120 + CYCLES * 3))]

# One program for every shape. Per-run knobs come through SOAK_PARAMS (the environment),
# so every run of a shape has exactly the command line of that shape's canary.
# SOAK_PIDS: each process appends "pid keep|temp" when born. SOAK_SIGLOG (canaries only):
# every catchable signal is recorded, never obeyed, so a stray signal is seen, not just felt.
AGENT = r"""
import json, os, random, signal, sys, time
SHAPE = sys.argv[1]
P = json.loads(os.environ.get("SOAK_PARAMS") or "{}")
SIGLOG, PIDS = os.environ.get("SOAK_SIGLOG"), os.environ.get("SOAK_PIDS")
rnd = random.Random(P.get("seed", 0))
CAUGHT = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCONT,
          signal.SIGUSR1, signal.SIGUSR2, signal.SIGQUIT, signal.SIGALRM)

def append(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)

def record(signum, frame):
    append(SIGLOG, "%d %d %.6f\n" % (os.getpid(), signum, time.time()))

def arm(term):
    if SIGLOG:
        for s in CAUGHT:
            signal.signal(s, record)
    elif term == "ignore":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    elif term == "slow":  # exits during the kill sequence
        signal.signal(signal.SIGTERM, lambda *a: (time.sleep(rnd.uniform(0, 0.3)), os._exit(0)))
    else:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

def announce(kind):
    if PIDS:  # pid, kind, and its start time (ticks after boot): a pid alone can be recycled
        stat = open("/proc/self/stat", "rb").read()
        start = stat[stat.rindex(b")") + 2:].split()[19].decode()
        append(PIDS, "%d %s %s\n" % (os.getpid(), kind, start))

def spawn(body=None, kind="keep", term="default", setsid=False, life=None):
    pid = os.fork()
    if pid:
        return pid
    try:
        rnd.seed(os.getpid() ^ P.get("seed", 0))
        if setsid:
            os.setsid()
        arm(term)
        announce(kind)
        if body:
            body()
        if life is None:
            while True:
                time.sleep(1000)
        time.sleep(life)
    finally:
        os._exit(0)

def storm():
    t = "ignore" if not SIGLOG else "default"
    for _ in range(P.get("storm", 150)):
        spawn(kind="temp", term=t, life=rnd.uniform(0.05, 1.0))
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass
        time.sleep(0.004)

def chain():
    # A TERM-ignoring fork chain: every generation starts a new session, forks and exits
    # within about a millisecond; each generation announces itself as 'temp'.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        time.sleep(0.001)
        if os.fork():
            os._exit(0)
        os.setsid()
        announce("temp")

def guard_attack(guard):
    # SIGSTOP the run's guard (the root's parent) again and again. Never in a canary: there
    # the root's parent is the test itself.
    while True:
        try:
            os.kill(guard, signal.SIGSTOP)
        except OSError:
            return
        time.sleep(0.1)

def stopped_member():
    spawn(lambda: os.kill(os.getpid(), signal.SIGSTOP))
    os.kill(os.getpid(), signal.SIGSTOP)

def build(shape):
    t = P.get("member_term", "default")
    if shape == "deep":
        def level(n):
            if n > 0:
                spawn(lambda: level(n - 1), term=t)
        level(P.get("depth", 4))
    elif shape == "wide":
        for _ in range(P.get("width", 8)):
            spawn(term=t)
    elif shape == "stubborn":
        spawn(term="ignore")
        spawn(lambda: spawn(term="ignore"), term="ignore")
        spawn(term=t)
    elif shape == "escapees":
        spawn(term=t)
        spawn(setsid=True, term=t)
        mid = os.fork()
        if mid == 0:  # double fork: the daemon's parent exits at once
            spawn(setsid=True, term=t)
            os._exit(0)
        os.waitpid(mid, 0)
    elif shape == "storm":
        spawn(storm, term="ignore")
    elif shape == "churn":
        for _ in range(P.get("width", 6)):
            spawn(kind="temp", term="slow", life=rnd.uniform(0.05, 1.5))
        spawn(term="slow")
    elif shape == "stopped":
        spawn(stopped_member, term=t)
        spawn(term=t)
    elif shape == "chain":
        if SIGLOG:  # a canary's chain would never end: one lasting member, same command line
            spawn(term=t)
        else:
            spawn(chain, kind="temp", term="ignore", setsid=True)
    elif shape == "attack":
        spawn(term=t)
        if not SIGLOG:
            guard = os.getppid()  # the root's parent, read before the fork
            spawn(lambda: guard_attack(guard), kind="temp", term=t)
    elif shape == "mixed":
        for part in P.get("parts", ()):
            build(part)

arm(P.get("root_term", "default"))
announce("keep")
build(SHAPE)
time.sleep(P.get("first", 0))
i, n, pad = 0, P.get("lines"), "x" * P.get("pad", 20)
while n is None or i < n:
    i += 1
    os.write(1, ("line %06d %s\n" % (i, pad)).encode())
    time.sleep(P.get("interval", 0.02))
sys.exit(P.get("code", 0))
"""

SHAPES = ("plain", "deep", "wide", "stubborn", "escapees", "storm", "churn", "stopped", "chain", "attack",
          "mixed")
CONTAINMENTS = ("auto", "guard")  # auto is a cgroup where the machine allows it
TIMINGS = ("early", "mid", "at_exit", "after_exit", "timeout")
MODES = ("direct", "threads", "stop_all")
CANARY_PARAMS = {"depth": 3, "width": 3, "storm": 30, "interval": 0.5, "parts": ["wide", "stopped"]}
TERMINAL = {"completed", "failed", "cancelled", "timed_out"}


def argv(shape: str) -> list[str]:
    return [PY, "-c", AGENT, shape]


def announced(path: Path, kind: str | None = None) -> list[int]:
    try:
        rows = [line.split() for line in path.read_text().splitlines()]
    except OSError:
        return []
    return [int(r[0]) for r in rows if len(r) == 3 and (kind is None or r[1] == kind)]


def announced_alive(path: Path) -> list[int]:
    """Announced processes that still run: the same pid *and* start time (with 30,000 and
    more processes in a long soak, pids wrap around: pid_max is often 32768)."""
    try:
        rows = [line.split() for line in path.read_text().splitlines()]
    except OSError:
        return []
    out = []
    for r in rows:
        if len(r) == 3:
            st = procfs.stat(int(r[0]))
            if st is not None and not st.dead and st.start == int(r[2]):
                out.append(int(r[0]))
    return out


def keep_count(shape: str, p: dict[str, object]) -> int:
    """How many 'keep' processes a canary of this shape announces once its tree is built."""
    counts = {"plain": 0, "deep": int(p["depth"]), "wide": int(p["width"]), "stubborn": 4,  # type: ignore[call-overload]
              "escapees": 3, "storm": 1, "churn": 1, "stopped": 3, "chain": 1, "attack": 1}
    extra = sum(counts[s] for s in p["parts"]) if shape == "mixed" else counts[shape]  # type: ignore[attr-defined]
    return 1 + extra


@dataclass
class Figures:
    cycles: int = 0
    runs: int = 0
    procs: int = 0  # announced by the agents' trees
    guards: int = 0
    leaked: int = 0
    wrongly_signalled: int = 0
    escalations: int = 0
    early_before_output: int = 0
    latencies: list[tuple[float, float, bool]] = field(default_factory=list)  # (seconds, grace, escalated)
    shapes: Counter[str] = field(default_factory=Counter)
    timings: Counter[str] = field(default_factory=Counter)
    modes: Counter[str] = field(default_factory=Counter)
    containments: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def problem(self, text: str) -> None:
        with self.lock:
            self.problems.append(text)


class Soak:
    """Everything one soak needs: a seeded RNG, the figures, canaries, a sibling run."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.rng = random.Random(SEED)
        self.fig = Figures()
        self.runs: list[tuple[runstop_nb.Run, Path]] = []
        self.counter = 0
        self.count_lock = threading.Lock()
        self.canary_log = tmp / "canary-signals.log"
        self.canaries: list[tuple[str, psutil.Popen, Path, str]] = []
        self.sibling: runstop_nb.Run | None = None
        self.sibling_logs: list[tuple[Path, float]] = []  # (signal log, time its legit stop began)

    # -- starting ---------------------------------------------------------------------

    def pidfile(self) -> Path:
        with self.count_lock:
            self.counter += 1
            return self.tmp / f"pids-{self.counter}.txt"

    def start(self, shape: str, p: dict[str, object], grace: float, timeout: float | None = None,
              extra_env: dict[str, str] | None = None, containment: str | None = None) -> tuple[runstop_nb.Run, Path]:
        pids = self.pidfile()
        env = {"SOAK_PARAMS": json.dumps(p), "SOAK_PIDS": str(pids), **(extra_env or {})}
        run = runstop_nb.start(argv(shape), env=env, grace=grace, timeout=timeout, containment=containment)
        with self.fig.lock:
            self.fig.containments[run.containment or "none"] += 1
            self.runs.append((run, pids))
            self.fig.runs += 1
        return run, pids

    def start_canaries(self) -> None:
        for shape in SHAPES:
            cookie = "soak-canary-" + uuid.uuid4().hex
            pids = self.pidfile()
            env = dict(os.environ, RUNSTOP_NB_COOKIE=cookie, SOAK_SIGLOG=str(self.canary_log),
                       SOAK_PIDS=str(pids), SOAK_PARAMS=json.dumps(CANARY_PARAMS))
            proc = psutil.Popen(argv(shape), env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.canaries.append((shape, proc, pids, cookie))
        for shape, _, pids, _ in self.canaries:
            want = keep_count(shape, CANARY_PARAMS)
            wait_for(partial(lambda p, w: len(announced(p, "keep")) >= w, pids, want), 30, f"the {shape} canary's tree")
        self.canary_procs = {pid: psutil.Process(pid) for _, _, p, _ in self.canaries for pid in announced(p, "keep")}

        def stopped() -> set[int]:
            return {pid for pid, proc in self.canary_procs.items() if proc.status() == psutil.STATUS_STOPPED}

        wait_for(lambda: len(stopped()) == 4, 30, "the stopped canaries' two SIGSTOPped members each")
        self.canary_stopped = stopped()

    def start_sibling(self) -> None:
        log = self.tmp / f"sibling-{len(self.sibling_logs)}.log"
        self.sibling, _ = self.start("wide", CANARY_PARAMS, grace=0.1, extra_env={"SOAK_SIGLOG": str(log)})
        self.sibling_logs.append((log, float("inf")))

    def stop_sibling(self) -> None:
        """A legitimate stop (before stop_all): signals logged after this moment are expected."""
        assert self.sibling is not None
        if self.sibling.done or self.sibling.status != "running":
            self.fig.problem(f"the sibling run ended on its own: {self.sibling!r}")
        log, _ = self.sibling_logs[-1]
        self.sibling_logs[-1] = (log, time.time())
        self.sibling.stop(grace=0.1)

    # -- checking ---------------------------------------------------------------------

    def check_gone(self, run: runstop_nb.Run, where: str) -> None:
        """Right after a run is done: nothing but (briefly) its released guard may remain."""
        guard = getattr(run._agent, "guard", None)
        left = [p for p in cookie_alive(run.spec.cookie) if guard is None or p != guard.pid]
        if left:
            self.fig.problem(f"{where}: {run!r} is {run.status} but {len(left)} of its processes live: {left}")
            with self.fig.lock:
                self.fig.leaked += len(left)
            kill_pids(left)
        deadline = time.monotonic() + 5
        while cookie_alive(run.spec.cookie) and time.monotonic() < deadline:
            time.sleep(0.02)
        late = cookie_alive(run.spec.cookie)
        if late:
            self.fig.problem(f"{where}: {run!r}: guard or stragglers alive 5 s after the end: {late}")
            with self.fig.lock:
                self.fig.leaked += len(late)
            kill_pids(late)

    def check_output(self, run: runstop_nb.Run, where: str) -> None:
        """The log holds the root's numbered lines 1..n, no gap, no duplicate, whatever the stop."""
        text = (run.log_dir / "stdout.log").read_bytes().decode()
        numbers = [int(line.split()[1]) for line in text.splitlines() if line.startswith("line ")]
        if numbers != list(range(1, len(numbers) + 1)):
            self.fig.problem(f"{where}: {run!r}: stdout lines are not 1..n: {numbers[:5]}…")

    def record(self, results: list[Timed]) -> None:
        with self.fig.lock:
            for result, secs, grace in results:
                self.fig.reasons[result.reason] += 1
                self.fig.escalations += result.escalated
                self.fig.latencies.append((secs, grace, result.escalated))

    def check_canaries(self) -> int:
        """Count canary processes hit: a recorded signal, death, or a changed stop state."""
        hit: set[int] = set()
        if self.canary_log.exists():
            hit |= {int(line.split()[0]) for line in self.canary_log.read_text().splitlines() if line}
        for pid, proc in self.canary_procs.items():  # every root and lasting member
            try:
                state = proc.status() if proc.is_running() else psutil.STATUS_DEAD
            except psutil.NoSuchProcess:
                state = psutil.STATUS_DEAD
            if state in (psutil.STATUS_DEAD, psutil.STATUS_ZOMBIE):
                hit.add(pid)  # killed
            elif (state == psutil.STATUS_STOPPED) != (pid in self.canary_stopped):
                hit.add(pid)  # stopped, or continued
        for log, legit_from in self.sibling_logs:
            if log.exists():
                rows = [line.split() for line in log.read_text().splitlines() if line]
                hit |= {int(r[0]) for r in rows if float(r[2]) < legit_from}
        return len(hit)

    def close(self) -> None:
        for _, proc, _, cookie in self.canaries:
            kill_pids(cookie_alive(cookie))
            if proc.poll() is None:
                proc.kill()
            proc.wait()


Timed = tuple[StopResult, float, float]  # (result, seconds the call took, grace asked for)


def timed_stop(stop: Callable[[], StopResult], grace: float) -> Timed:
    t0 = time.monotonic()
    result = stop()
    return result, time.monotonic() - t0, grace


def timed_stop_all(grace: float) -> list[Timed]:
    t0 = time.monotonic()
    results = runstop_nb.stop_all(grace)
    secs = time.monotonic() - t0
    return [(r, secs, grace) for r in results]


def concurrently(calls: Sequence[Callable[[], object]]) -> list[object]:
    """Run the calls on their own threads, released together by a barrier."""
    barrier = threading.Barrier(len(calls))
    out: list[object] = [None] * len(calls)

    def go(i: int) -> None:
        barrier.wait()
        try:
            out[i] = calls[i]()
        except BaseException as e:
            out[i] = e

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return out


def cycle(soak: Soak, n: int) -> None:
    rng, fig = soak.rng, soak.fig
    shape, timing, mode = rng.choice(SHAPES), rng.choice(TIMINGS), rng.choice(MODES)
    containment = rng.choice(CONTAINMENTS)
    grace = round(rng.uniform(0.05, 0.8), 3)
    p: dict[str, object] = {
        "seed": rng.randrange(1 << 30), "member_term": rng.choice(["default", "default", "ignore", "slow"]),
        "root_term": rng.choice(["default", "default", "ignore", "slow"]), "depth": rng.randint(2, 8),
        "width": rng.randint(3, 16), "storm": rng.randint(50, 200), "interval": rng.uniform(0.002, 0.03),
        "first": 0.0, "lines": None, "code": rng.choice([0, 0, 1, 3]),
        "parts": rng.sample([s for s in SHAPES if s not in ("plain", "storm", "mixed")], rng.randint(2, 3)),
    }
    if timing == "after_exit" and _endless(shape, p):
        timing = "mid"  # a fork chain never ends by itself
    if timing == "early":
        p["first"] = rng.uniform(0.5, 1.0)
    elif timing in ("at_exit", "after_exit"):
        p["lines"] = rng.randint(0, 30)
    timeout = rng.uniform(0.2, 0.8) if timing == "timeout" else None
    where = f"cycle {n} (seed {SEED}: {shape}/{timing}/{mode}/{containment}, grace {grace}, {json.dumps(p)})"
    fig.shapes[shape] += 1
    fig.timings[timing] += 1
    fig.modes[mode] += 1
    if mode == "stop_all":
        soak.stop_sibling()
    group = [soak.start(shape, p, grace, timeout, containment=containment)[0]
             for _ in range(rng.randint(1, 3) if mode == "stop_all" else 1)]
    run = group[0]
    fig.cycles += len(group)
    try:
        if timing == "early":
            fig.early_before_output += run.lines == 0 and run.bytes == 0
        elif timing == "mid":
            k = rng.randint(1, 40)
            wait_for(lambda: run.lines >= k, 20, f"{k} lines from {where}")
        elif timing == "at_exit":
            lines = p["lines"]
            assert isinstance(lines, int)
            time.sleep(0.05 + lines * float(p["interval"]) * rng.uniform(0.5, 1.5))  # type: ignore[arg-type]  # race the exit on purpose
        elif timing == "after_exit":
            for member in group:
                if member.wait(30) not in TERMINAL:
                    fig.problem(f"{where}: {member!r} did not end on its own within 30 s")
        elif timing == "timeout":
            assert timeout is not None
            time.sleep(timeout * rng.uniform(0.7, 1.3))  # race the timeout on purpose
        if mode == "direct":
            calls: list[Callable[[], list[Timed]]] = [lambda: [timed_stop(lambda: run.stop(grace), grace)]]
        elif mode == "threads":
            graces = [round(rng.uniform(0.05, 0.8), 3) for _ in range(rng.randint(2, 4))]
            calls = [lambda g=g: [timed_stop(lambda: run.stop(g), g)] for g in graces]  # type: ignore[misc]
        else:
            calls = [lambda: timed_stop_all(grace)]
            if rng.random() < 0.5:
                calls.append(lambda: [timed_stop(lambda: run.stop(grace), grace)])
        outcomes = concurrently(calls) if len(calls) > 1 else [calls[0]()]
        good: list[Timed] = []
        for out in outcomes:
            if isinstance(out, BaseException):
                fig.problem(f"{where}: a stop raised {''.join(traceback.format_exception(out))}")
            else:
                good.extend(out)  # type: ignore[arg-type]
        # A stop may wait behind a concurrent stop of the same run: the longest grace in
        # play is the one its latency is measured against.
        in_play = max([grace, *[g for _, _, g in good]])
        soak.record([(r, secs, in_play) for r, secs, _ in good])
        # A stop that waited behind a concurrent stop of the same run returns that stop's
        # result, the very same object: one ladder, reported twice. Count ladders.
        stopped = list({id(r): r for r, _, _ in good if r.reason == "stopped"}.values())
        odd = [r for r, _, _ in good if r.reason not in ("stopped", "already_terminal")]
        if odd or len(stopped) > len(group):
            fig.problem(f"{where}: unexpected stop results {odd or stopped}")
        ceiling = in_play + LATENCY_SLACK
        for r, secs, g in good:
            if secs > ceiling:
                fig.problem(f"{where}: a stop took {secs:.2f} s (grace {g}): {r}")
        for member in group:
            if member.wait(20) not in TERMINAL or not member.done:
                fig.problem(f"{where}: {member!r} not terminal after the stop")
            fig.statuses[member.status] += 1
            if member.status == "timed_out" and member.last_stop is not None:  # the timeout's own stop
                fig.escalations += member.last_stop.escalated
            expected = {"early": {"cancelled"}, "mid": {"cancelled"},
                        "at_exit": {"cancelled", "completed", "failed"},
                        "after_exit": {"completed", "failed"}, "timeout": {"cancelled", "timed_out"}}[timing]
            if member.status not in expected:
                fig.problem(f"{where}: {member!r} ended {member.status}, expected one of {sorted(expected)}")
            if member.status in ("completed", "failed") and member.returncode != p["code"]:
                fig.problem(f"{where}: {member!r} exit {member.returncode}, the agent exits {p['code']}")
            soak.check_gone(member, where)
            soak.check_output(member, where)
    finally:
        for member in group:  # never leave a cycle's tree behind, whatever failed above
            if not member.done:
                member.stop(0.1)
            kill_pids(cookie_alive(member.spec.cookie))
        if mode == "stop_all":
            soak.start_sibling()


def _endless(shape: str, p: dict[str, object]) -> bool:
    parts = p["parts"] if shape == "mixed" else [shape]
    return "chain" in parts  # type: ignore[operator]


def concurrency(soak: Soak) -> None:
    """50 runs started and stopped from 8 threads; one thread also calls stop_all midway."""
    fig, pool, lock = soak.fig, [], threading.Lock()
    seeds = [soak.rng.randrange(1 << 30) for _ in range(CONCURRENT_RUNS)]
    mine: list[runstop_nb.Run] = []
    soak.stop_sibling()  # stop_all below would stop it

    def live_names_unique(where: str) -> None:
        reg = registry()
        with reg._lock:  # no run can be added while we look: names are reserved under this lock
            names = [r.name for r in reg.all() if not r.done]
        dup = [n for n, c in Counter(names).items() if c > 1]
        if dup:
            fig.problem(f"{where}: two live runs share a name: {dup}")

    def job(j: int) -> None:
        rng = random.Random(seeds[j])
        shape = rng.choice(["plain", "wide", "escapees", "stubborn", "deep", "stopped"])
        p = {"seed": seeds[j], "width": rng.randint(2, 6), "depth": rng.randint(2, 4),
             "interval": 0.02, "member_term": rng.choice(["default", "ignore"])}
        grace = round(rng.uniform(0.05, 0.3), 3)
        run, _ = soak.start(shape, p, grace)
        with lock:
            mine.append(run)
            pool.append(run)
        live_names_unique(f"concurrency job {j}")
        time.sleep(rng.uniform(0, 0.3))
        if j == CONCURRENT_RUNS // 2:  # while other threads start and stop runs
            soak.record(timed_stop_all(grace))
            return
        with lock:
            victim = pool.pop(rng.randrange(len(pool))) if pool else None
        if victim is not None:
            soak.record([timed_stop(lambda: victim.stop(grace), grace)])

    with ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="soak") as ex:
        for fut in [ex.submit(job, j) for j in range(CONCURRENT_RUNS)]:
            try:
                fut.result(120)
            except Exception as e:
                fig.problem(f"concurrency: a job raised {''.join(traceback.format_exception(e))}")
    soak.record([timed_stop(lambda r=r: r.stop(0.2), 0.2) for r in pool])  # type: ignore[misc]
    fig.cycles += len(mine)
    for run in mine:
        if run.wait(20) not in TERMINAL:
            fig.problem(f"concurrency: {run!r} not terminal")
        fig.statuses[run.status] += 1
        soak.check_gone(run, "concurrency")
    soak.start_sibling()


def registry_consistency(soak: Soak) -> str:
    """Every run terminal and released, ids unique, lookups round-trip, nothing reserved."""
    reg, sup = registry(), supervisor()
    ours = [r for r, _ in soak.runs]
    listed = runstop_nb.runs()
    issues = []
    ids = [r.id for r in listed]
    if len(ids) != len(set(ids)):
        issues.append("duplicate ids")
    missing = [r.id for r in ours if r not in listed]
    if missing:
        issues.append(f"runs missing from runs(): {missing}")
    for run in ours:
        if not run.done or run.status not in TERMINAL or run.ended_at is None:
            issues.append(f"{run!r} not terminal")
        if runstop_nb.get(run.id) is not run:
            issues.append(f"get({run.id!r}) is another run")
        if run.members():
            issues.append(f"{run!r} still lists members")
        if (run.status in ("completed", "failed")) != ((run.returncode is not None and run.last_stop is None)
                                                     or run.status in ("completed", "failed")):
            issues.append(f"{run!r} returncode/status mismatch")
    tickers = [r for r in ours if r in sup._tickers]
    if tickers:
        issues.append(f"{len(tickers)} ended runs still tick")
    if reg._reserved:
        issues.append(f"names still reserved: {reg._reserved}")
    if issues:
        soak.fig.problems.extend(f"registry: {i}" for i in issues)
        return f"{len(issues)} inconsistencies"
    return f"ok ({len(ours)} runs: all terminal and released, ids unique, get() round-trips, 0 tickers, 0 reserved names)"


def report(soak: Soak, wall: float, registry_line: str) -> str:
    fig = soak.fig
    secs = sorted(s for s, _, _ in fig.latencies)
    beyond = [s - g for s, g, _ in fig.latencies]
    polite = sorted(s for s, _, e in fig.latencies if not e)  # no SIGKILL: no grace waited out
    pct95 = secs[min(len(secs) - 1, int(0.95 * len(secs)))] if secs else 0.0
    shown = lambda c: ", ".join(f"{k} {v}" for k, v in sorted(c.items()))  # noqa: E731
    return "\n".join([
        "",
        f"== runstop_nb soak: seed {SEED}, RUNSTOP_SOAK_CYCLES={CYCLES}, {wall:.1f} s wall, "
        f"{psutil.cpu_count()} cores, Python {sys.version.split()[0]}, {sys.platform}",
        f"cycles                  {CYCLES} randomized + {CONCURRENT_RUNS} from {THREADS} threads "
        f"({fig.cycles} runs stopped or ended)",
        f"  shapes                {shown(fig.shapes)}",
        f"  stop timing           {shown(fig.timings)} ({fig.early_before_output} stops before any output)",
        f"  stop routes           {shown(fig.modes)}",
        f"  containment           {shown(fig.containments)}",
        f"runs started            {fig.runs} (incl. sibling canary runs)",
        f"processes started       {fig.procs + fig.guards} ({fig.procs} in agent trees, {fig.guards} guards)",
        f"leaked                  {fig.leaked}",
        f"wrongly signalled       {fig.wrongly_signalled} ({len(soak.canaries)} canary trees, "
        f"{len(soak.canary_procs)} canary processes, {len(soak.sibling_logs)} sibling runs)",
        f"escalations             {fig.escalations} (SIGKILL needed after the grace)",
        f"stop latency            median {statistics.median(secs) if secs else 0:.3f} s, p95 {pct95:.3f} s, "
        f"max {max(secs, default=0):.3f} s over {len(secs)} stop calls; "
        f"max beyond the longest grace in play {max(beyond, default=0):.3f} s",
        f"  without escalation    median {statistics.median(polite) if polite else 0:.3f} s, "
        f"max {max(polite, default=0):.3f} s over {len(polite)} stop calls (the tree obeyed SIGTERM, or was already over)",
        f"stop results            {shown(fig.reasons)}",
        f"final statuses          {shown(fig.statuses)}",
        f"registry consistency    {registry_line}",
        f"problems                {len(fig.problems)}",
    ])


def test_soak_cycles_leak_nothing_and_spare_every_canary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t0 = time.monotonic()
    soak = Soak(tmp_path)
    try:
        soak.start_canaries()
        soak.start_sibling()
        for n in range(CYCLES):
            try:
                cycle(soak, n)
            except Exception:
                soak.fig.problem(f"cycle {n} (seed {SEED}) raised:\n{traceback.format_exc()}")
            if CYCLES >= 100 and (n + 1) % 50 == 0:  # a long soak shows it is alive
                with capsys.disabled():
                    print(f"\n  soak: {n + 1}/{CYCLES} cycles, {time.monotonic() - t0:.0f} s, "
                          f"{soak.fig.leaked} leaked, {len(soak.fig.problems)} problems", flush=True)
        concurrency(soak)
        soak.stop_sibling()
        soak.sibling.wait(10)  # type: ignore[union-attr]
        soak.fig.wrongly_signalled = soak.check_canaries()
        registry_line = registry_consistency(soak)
        soak.fig.procs = sum(len(set(announced(pids))) for _, pids in soak.runs)
        soak.fig.guards = len(soak.runs)
        every = [pid for run, _ in soak.runs for pid in cookie_alive(run.spec.cookie)]
        soak.fig.leaked += len(every)  # a last sweep over every cookie of the soak
        kill_pids(every)
        text = report(soak, time.monotonic() - t0, registry_line)
        with capsys.disabled():
            print(text)
            for problem in soak.fig.problems[:20]:
                print("  problem:", problem)
    finally:
        for run, _ in soak.runs:
            if not run.done:
                run.stop(0.1)
            kill_pids(cookie_alive(run.spec.cookie))
        soak.close()
    assert soak.fig.leaked == 0, f"leaked processes (seed {SEED}): {soak.fig.problems[:5]}"
    assert soak.fig.wrongly_signalled == 0, "canaries were signalled"
    assert not soak.fig.problems, "\n".join(soak.fig.problems[:10])
    assert not [p for _, pids in soak.runs for p in announced_alive(pids)], "announced processes alive"
