"""The stop ladder against real process trees, in both containment modes.

Every tree runs as a real run (warden, guard, cgroup or subreaper, cookie). Canaries (a
``sleep`` with the same command line but another cookie, and a sibling run) must survive
every stop. The fork-chain trials are repeated (``RUNSTOP_RACE_TRIALS``, default 20) and
checked from outside: a heartbeat file that every generation appends to must stop
growing, and no process may carry the run's cookie.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import runstop_nb
from runstop_nb._proc import procfs
from runstop_nb._proc.ladder import FORCE_BUDGET, climb
from runstop_nb._proc.pinned import Pinned
from runstop_nb._proc.trees import ScanTree

from .helpers import (
    FORKCHAIN,
    PY,
    TRIALS,
    Canaries,
    alive,
    assert_chain_dead,
    beats,
    cookie_alive,
    kill_pids,
    wait_for,
)


def start_tree(script: str, expect: int, grace: float = 0.5, name: str | None = None) -> runstop_nb.Run:
    """Start ``bash -c script``; wait until ``expect`` of its processes carry its cookie."""
    run = runstop_nb.start(["bash", "-c", script], grace=grace, name=name)
    wait_for(lambda: len(cookie_alive(run.spec.cookie)) >= expect, 10, f"{expect} processes in tree {script!r}")
    return run


def sleeps(run: runstop_nb.Run) -> list[psutil.Process]:
    out = []
    for pid in cookie_alive(run.spec.cookie):
        try:
            proc = psutil.Process(pid)
            if proc.name() == "sleep":
                out.append(proc)
        except psutil.Error:
            pass
    return out


def ignores_term(pid: int) -> bool:
    """True once the process ignores SIGTERM (its SigIgn mask in /proc)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            mask = next(int(ln.split()[1], 16) for ln in f if ln.startswith("SigIgn:"))
    except (OSError, StopIteration):
        return False
    return bool(mask & (1 << (signal.SIGTERM - 1)))


def escapees(run: runstop_nb.Run) -> list[int]:
    """Sleeps that left the agent's session (setsid)."""
    return [p.pid for p in sleeps(run) if os.getsid(p.pid) != run.pid]


def assert_tree_dead(run: runstop_nb.Run) -> None:
    assert cookie_alive(run.spec.cookie) == [], "processes with the run's cookie survived"
    if run.cgroup:
        assert not os.path.exists(run.cgroup), "the run's cgroup was not removed"


@pytest.fixture
def sibling() -> runstop_nb.Run:
    """A second run that must be untouched by stopping the first."""
    return runstop_nb.start(["sleep", "1000"], name="sibling")


def check_canaries(canaries: Canaries, sibling: runstop_nb.Run) -> None:
    canaries.assert_alive()
    assert sibling.status == "running" and alive(sibling.pid or 0)


def test_each_run_says_how_it_is_contained(mode: str) -> None:
    run = runstop_nb.start(["sleep", "1000"])
    assert run.containment == mode
    if mode == "cgroup":
        assert run.cgroup
        assert Path(run.cgroup, "cgroup.procs").read_text().split() == [str(run.pid)]
    else:
        assert run.cgroup is None
    result = run.stop()
    assert result.stopped and result.verified_by == ("cgroup+subreaper" if mode == "cgroup" else "subreaper")


def test_member_ignoring_term_is_killed_while_leader_exits_on_term(
        mode: str, canaries: Canaries, sibling: runstop_nb.Run) -> None:
    canaries.start(["sleep", "1000"])
    run = start_tree("(trap '' TERM; sleep 1000) & sleep 1000", expect=3, grace=0.3)
    wait_for(lambda: any(ignores_term(p.pid) for p in sleeps(run)), 10, "the member to ignore TERM")
    result = run.stop()
    assert result.stopped and result.reason == "stopped"
    assert result.escalated, "a TERM-ignoring member needs SIGKILL"
    assert run.status == "cancelled"
    assert_tree_dead(run)
    check_canaries(canaries, sibling)


def test_stop_kills_setsid_grandchild(mode: str, canaries: Canaries, sibling: runstop_nb.Run) -> None:
    canaries.start(["sleep", "1000"])
    run = start_tree("setsid sleep 1000 & sleep 1000", expect=2)
    wait_for(lambda: escapees(run), 5, "the setsid'd grandchild in its own session")
    escapee = escapees(run)
    result = run.stop()
    assert result.stopped
    assert not any(alive(p) for p in escapee)
    assert_tree_dead(run)
    check_canaries(canaries, sibling)


def test_killpg_alone_misses_setsid_grandchild() -> None:
    """Why the test above matters: a killpg-only stop, on the same tree, leaves the escapee."""
    cookie = "killpg-demo-" + uuid.uuid4().hex
    tree = subprocess.Popen(["bash", "-c", "setsid sleep 1000 & sleep 1000"], start_new_session=True,
                            env=dict(os.environ, RUNSTOP_NB_COOKIE=cookie))
    try:
        def escaped() -> list[int]:
            return [p for p in cookie_alive(cookie) if p != tree.pid and os.getsid(p) != tree.pid]

        wait_for(escaped, 5, "the setsid'd grandchild")
        os.killpg(tree.pid, signal.SIGKILL)
        tree.wait(5)
        assert escaped(), "killpg alone should have missed the setsid'd sleep"
    finally:
        kill_pids(cookie_alive(cookie))
        if tree.poll() is None:
            tree.kill()
            tree.wait()


def test_stop_kills_double_forked_daemon(mode: str, canaries: Canaries, sibling: runstop_nb.Run) -> None:
    canaries.start(["sleep", "1000"])
    run = start_tree("( ( exec sleep 1000 ) & ) ; sleep 1000", expect=2)
    wait_for(lambda: [p for p in sleeps(run) if p.ppid() != run.pid], 5, "a re-parented daemon")
    daemon = [p.pid for p in sleeps(run) if p.ppid() != run.pid]
    guard = run._agent.guard  # type: ignore[union-attr]
    assert guard is not None
    assert psutil.Process(daemon[0]).ppid() == guard.pid, "the subreaper guard adopted the daemon"
    assert run.stop().stopped
    assert_tree_dead(run)
    check_canaries(canaries, sibling)


def test_member_exiting_during_the_kill_sequence(mode: str, canaries: Canaries, sibling: runstop_nb.Run) -> None:
    canaries.start(["sleep", "1000"])
    slow_exit = ("python3 -c 'import signal,sys,time; "
                 "signal.signal(signal.SIGTERM, lambda *a: (time.sleep(0.3), sys.exit(0))); "
                 "print(1, flush=True); time.sleep(1000)'")
    run = start_tree(f"{slow_exit} & {slow_exit} & sleep 1000", expect=3, grace=3)
    wait_for(lambda: run.output().count("1") >= 2, 10, "both slow exiters to install handlers")
    result = run.stop()
    assert result.stopped and not result.escalated, "every member left within the grace"
    assert_tree_dead(run)
    check_canaries(canaries, sibling)


def test_recycled_pid_is_never_signalled() -> None:
    """Kill a process, force its pid onto a new one (ns_last_pid), signal the stale handle."""
    path = "/proc/sys/kernel/ns_last_pid"
    if not os.access(path, os.W_OK):
        pytest.skip("needs a writable ns_last_pid (root) to recycle a pid on purpose")
    old = subprocess.Popen(["sleep", "1000"])
    time.sleep(0.05)  # start times have 10 ms ticks: a pid recycled within one tick is indistinguishable
    stale = Pinned.now(old.pid)
    assert stale is not None
    old.kill()
    old.wait()
    new = None
    try:
        for _ in range(50):
            with open(path, "w") as f:
                f.write(str(old.pid - 1))
            new = subprocess.Popen(["sleep", "1000"])
            if new.pid == old.pid:
                break
            new.kill()
            new.wait()
            new = None
        if new is None:
            pytest.skip("could not recycle the pid (a busy machine took it)")
        time.sleep(0.05)
        assert not stale.signal(signal.SIGKILL), "the stale handle claimed a delivery"
        time.sleep(0.05)
        assert new.poll() is None, "a recycled pid was signalled"
        assert not stale.alive()
    finally:
        if new is not None:
            new.kill()
            new.wait()


def test_stopped_member_gets_sigcont_and_dies_without_escalation(
        mode: str, canaries: Canaries, sibling: runstop_nb.Run) -> None:
    canaries.start(["sleep", "1000"])
    run = start_tree("sleep 1000 & kill -STOP $!; sleep 1000", expect=2, grace=3)
    wait_for(lambda: any(psutil.Process(p).status() == psutil.STATUS_STOPPED
                         for p in cookie_alive(run.spec.cookie)), 5, "a stopped member")
    result = run.stop()
    assert result.stopped
    assert not result.escalated, "TERM+CONT ends a stopped member; no SIGKILL needed"
    assert result.elapsed_s < 2.5, "a stopped member must not wait out the grace"
    assert_tree_dead(run)
    check_canaries(canaries, sibling)


def test_fork_storm_converges(mode: str, canaries: Canaries, sibling: runstop_nb.Run) -> None:
    canaries.start(["sleep", "1000"])
    run = start_tree("trap '' TERM; while :; do (trap '' TERM; sleep 1000) & sleep 0.002; done",
                     expect=20, grace=0.3)
    result = run.stop()
    assert result.stopped, f"a fork storm must converge within bounded rounds: {result}"
    assert result.escalated
    assert_tree_dead(run)
    check_canaries(canaries, sibling)


def test_grandchild_holding_stdout_does_not_hold_the_run(mode: str) -> None:
    run = runstop_nb.start(["bash", "-c", "sleep 1000 & echo started; exit 0"], grace=0.5)
    assert run.wait(10) == "completed", "the run ends when its root exits, not at stdout EOF"
    assert run.returncode == 0
    assert "started" in run.output()
    assert_tree_dead(run)  # the leftover holding stdout died with the run
    assert run.last_stop is not None and run.last_stop.cause == "exit" and run.last_stop.signalled == 1


def test_unkillable_member_is_reported_and_stop_returns(monkeypatch: pytest.MonkeyPatch) -> None:
    """A member that survives SIGKILL (D state) must not hang stop; it is listed, and the run
    stays ``stopping`` until a watcher sees it gone.

    Real D state cannot be produced on demand here, so in the kernel-side ladder (the
    direct backend) a real ``sleep`` joins the tree as a member whose signals are recorded
    and dropped: to the ladder it is a live process that will not die.
    """
    monkeypatch.setenv("RUNSTOP_NB_NO_GUARD", "1")
    stuck = subprocess.Popen(["sleep", "1000"])
    received: list[int] = []

    class Unkillable(Pinned):
        def signal(self, sig: int) -> bool:
            received.append(sig)
            return True

    st = procfs.stat(stuck.pid)
    assert st is not None
    fake = Unkillable.of(st)
    real_members = ScanTree.members
    monkeypatch.setattr(ScanTree, "members", lambda self: {**real_members(self), stuck.pid: fake})
    try:
        run = runstop_nb.start(["sleep", "1000"], grace=0.2)
        t0 = time.monotonic()
        result = run.stop()
        took = time.monotonic() - t0
        assert not result.stopped and result.reason == "unkillable"
        assert [s.pid for s in result.unkillable] == [stuck.pid]
        assert took < 0.2 + FORCE_BUDGET + 1.0
        assert run.status == "stopping", "not verified dead, so not cancelled"
        assert signal.SIGKILL in received
        assert not alive(run.pid or 0), "the real members died"
        monkeypatch.setattr(ScanTree, "members", real_members)
        wait_for(lambda: run.status == "cancelled", 5, "the background watcher to finish the run")
    finally:
        stuck.kill()
        stuck.wait()


def test_guard_sigkilled_while_running_ends_tree(mode: str, canaries: Canaries, sibling: runstop_nb.Run) -> None:
    canaries.start(["sleep", "1000"])
    run = start_tree("setsid sleep 1000 & sleep 1000", expect=2)
    guard = run._agent.guard  # type: ignore[union-attr]
    assert guard is not None
    os.kill(guard.pid, signal.SIGKILL)
    assert run.wait(10) == "failed", "nobody stopped it: a lost guard is a failure"
    assert run.error and "guard" in run.error
    assert run.last_stop is not None and run.last_stop.cause == "guard_lost" and run.last_stop.stopped
    assert_tree_dead(run)
    check_canaries(canaries, sibling)


def test_cooperative_tree_of_eleven_dies_on_term(mode: str) -> None:
    run = start_tree("for i in 1 2 3 4 5 6 7 8 9 10; do sleep 1000 & done; wait", expect=11)
    result = run.stop()
    assert result.stopped and not result.escalated
    assert result.signalled == 11
    assert_tree_dead(run)


def test_each_process_gets_exactly_one_sigterm_per_stop(mode: str, tmp_path: Path) -> None:
    """Many CLIs treat a second SIGTERM as "force quit now" and skip their clean shutdown."""
    agent = ("import signal, sys, time\n"
             "def h(s, f): print('got signal', s, flush=True)\n"
             "signal.signal(signal.SIGTERM, h)\n"
             "print('ready', flush=True)\n"
             "time.sleep(1000)\n")
    run = runstop_nb.start([PY, "-c", agent], grace=0.5)
    wait_for(lambda: "ready" in run.output(), 10, "the handler to be installed")
    result = run.stop()
    assert result.stopped and result.escalated
    assert run.output().count("got signal 15") == 1, run.output()


def test_climb_on_empty_tree_signals_nothing() -> None:
    verdict = climb(ScanTree("no-such-cookie", started_at=time.time()), grace=1)
    assert verdict.dead and verdict.signalled == 0 and not verdict.escalated and verdict.survivors == ()
    assert verdict.verified_by == "scan"


def test_ancestors_are_listed_for_protection() -> None:
    assert os.getppid() in procfs.ancestors(os.getpid())


# -- fork chains (issue: a snapshot-based ladder loses this race) ----------------------------

@pytest.fixture
def chains(tmp_path: Path) -> Iterator[Path]:
    """A folder for heartbeats; anything of the chains still alive afterwards is killed by pid."""
    yield tmp_path
    for run in runstop_nb.runs():
        if run.argv[:2] == [PY, FORKCHAIN]:
            kill_pids(cookie_alive(run.spec.cookie))


@pytest.mark.races
@pytest.mark.parametrize("variant", ["same", "setsid", "pgrp"])
def test_term_ignoring_fork_chain_is_dead_when_stop_returns(mode: str, variant: str, chains: Path) -> None:
    for trial in range(TRIALS):
        beat = chains / f"{variant}-{trial}.beat"
        run = runstop_nb.start([PY, FORKCHAIN, variant, str(beat)], grace=0.5)
        wait_for(lambda: beats(beat) >= 20, 10, "the chain to run 20 generations")  # noqa: B023
        result = run.stop(grace=0.5)
        assert result.stopped and result.escalated, f"trial {trial}: {result}"
        assert result.verified_by in ("cgroup+subreaper", "subreaper")
        assert run.status == "cancelled"
        assert_chain_dead(run, beat)


@pytest.mark.races
@pytest.mark.parametrize("variant", ["same", "setsid", "pgrp"])
def test_fork_chain_under_a_live_root_is_dead_when_stop_returns(mode: str, variant: str, chains: Path) -> None:
    """The root stays alive (a shell), so this is the stop path alone, not the natural end."""
    for trial in range(TRIALS):
        beat = chains / f"root-{variant}-{trial}.beat"
        run = runstop_nb.start(["bash", "-c", f"{PY} {FORKCHAIN} {variant} {beat} & sleep 1000"], grace=0.2)
        wait_for(lambda: beats(beat) >= 20, 10, "the chain to run 20 generations")  # noqa: B023
        result = run.stop()
        assert result.stopped and result.escalated, f"trial {trial}: {result}"
        assert run.status == "cancelled"
        assert_chain_dead(run, beat)
