"""The stop ladder against real process trees: failure modes 1-8, 10 and 11 of STOP_DESIGN.md.

Every tree runs as a real run (guard, subreaper, cookie). Canaries (a ``sleep`` with the
same command line but another cookie, and a sibling run) must survive every stop.
"""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

import runstop_nb
from runstop_nb import _ladder
from runstop_nb._ladder import Scope, climb

from .conftest import Canaries, alive, cookie_alive, kill_pids, wait_for


def start_tree(script: str, expect: int, grace: float = 0.5, name: str | None = None) -> runstop_nb.Run:
    """Start ``bash -c script``; wait until ``expect`` of its processes have exec'd ``sleep``
    (or, for expect > sleeps, until that many processes carry its cookie)."""
    run = runstop_nb.start(["bash", "-c", script], grace=grace, name=name)
    wait_for(lambda: len(cookie_alive(run.spec.cookie)) - 1 >= expect, 10,  # minus the guard
             f"{expect} processes in tree {script!r}")
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


@pytest.fixture
def sibling() -> runstop_nb.Run:
    """A second run that must be untouched by stopping the first."""
    return runstop_nb.start(["sleep", "1000"], name="sibling")


def check_canaries(canaries: Canaries, sibling: runstop_nb.Run) -> None:
    canaries.assert_alive()
    assert sibling.status == "running" and alive(sibling.pid or 0)


def test_member_ignoring_term_is_killed_while_leader_exits_on_term(canaries: Canaries, sibling: runstop_nb.Run) -> None:
    canaries.start(["sleep", "1000"])
    run = start_tree("(trap '' TERM; sleep 1000) & sleep 1000", expect=3, grace=0.3)
    wait_for(lambda: any(ignores_term(p.pid) for p in sleeps(run)), 10, "the member to ignore TERM")
    result = run.stop()
    assert result.stopped and result.reason == "stopped"
    assert result.escalated, "a TERM-ignoring member needs SIGKILL"
    assert run.status == "cancelled"
    assert_tree_dead(run)
    check_canaries(canaries, sibling)


def test_stop_kills_setsid_grandchild(canaries: Canaries, sibling: runstop_nb.Run) -> None:
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
    import subprocess
    import uuid

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


def test_stop_kills_double_forked_daemon(canaries: Canaries, sibling: runstop_nb.Run) -> None:
    canaries.start(["sleep", "1000"])
    run = start_tree("( ( exec sleep 1000 ) & ) ; sleep 1000", expect=2)
    wait_for(lambda: [p for p in sleeps(run) if p.ppid() != run.pid], 5, "a re-parented daemon")
    daemon = [p.pid for p in sleeps(run) if p.ppid() != run.pid]
    # The subreaper guard adopted it, so it is still in the run's tree:
    assert psutil.Process(daemon[0]).ppid() in {run.pid, run._agent.guard.pid}  # type: ignore[union-attr]
    assert run.stop().stopped
    assert_tree_dead(run)
    check_canaries(canaries, sibling)


def test_member_exiting_during_the_kill_sequence(canaries: Canaries, sibling: runstop_nb.Run) -> None:
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
    import subprocess

    old = subprocess.Popen(["sleep", "1000"])
    stale = psutil.Process(old.pid)
    time.sleep(0.1)  # create_time has 10 ms ticks: a pid recycled within one tick is indistinguishable
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
        scope = Scope(cookie="none", started_at=time.time())
        _ladder._send(scope, {stale.pid: stale}, [signal.SIGKILL])
        time.sleep(0.05)
        assert new.poll() is None, "a recycled pid was signalled"
        assert _ladder.is_dead(stale)
    finally:
        if new is not None:
            new.kill()
            new.wait()


def test_stopped_member_gets_sigcont_and_dies_without_escalation(canaries: Canaries, sibling: runstop_nb.Run) -> None:
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


def test_fork_storm_converges(canaries: Canaries, sibling: runstop_nb.Run) -> None:
    canaries.start(["sleep", "1000"])
    run = start_tree("trap '' TERM; while :; do (trap '' TERM; sleep 1000) & sleep 0.002; done",
                     expect=20, grace=0.3)
    result = run.stop()
    assert result.stopped, f"a fork storm must converge within bounded rounds: {result}"
    assert result.escalated
    assert_tree_dead(run)
    check_canaries(canaries, sibling)


def test_grandchild_holding_stdout_does_not_hold_the_run() -> None:
    run = runstop_nb.start(["bash", "-c", "sleep 1000 & echo started; exit 0"], grace=0.5)
    assert run.wait(10) == "completed", "the run ends when its root exits, not at stdout EOF"
    assert run.returncode == 0
    assert "started" in run.output()
    assert_tree_dead(run)  # the leftover holding stdout died with the run


def test_unkillable_member_is_reported_and_stop_returns(monkeypatch: pytest.MonkeyPatch) -> None:
    """A member that survives SIGKILL (D state) must not hang stop; it is listed.

    Real D state cannot be produced on demand here, so a real ``sleep`` is wrapped in a
    psutil.Process whose signals are recorded and dropped: to the ladder it is a live
    process that will not die.
    """
    import subprocess

    stuck = subprocess.Popen(["sleep", "1000"])
    received: list[int] = []

    class Unkillable(psutil.Process):
        def send_signal(self, sig: int) -> None:
            received.append(sig)

    real_snapshot = _ladder.snapshot
    fake = Unkillable(stuck.pid)
    monkeypatch.setattr(_ladder, "snapshot", lambda scope: {**real_snapshot(scope), stuck.pid: fake})
    try:
        run = runstop_nb.start(["sleep", "1000"], grace=0.2)
        t0 = time.monotonic()
        result = run.stop()
        took = time.monotonic() - t0
        assert not result.stopped and result.reason == "unkillable"
        assert [s.pid for s in result.unkillable] == [stuck.pid]
        assert took < 0.2 + _ladder.FORCE_ROUNDS * _ladder.ROUND_WAIT + 1.5
        assert run.status == "stopping", "not verified dead, so not cancelled"
        assert signal.SIGKILL in received
        assert not alive(run.pid or 0), "the real members died"
        monkeypatch.setattr(_ladder, "snapshot", real_snapshot)
        wait_for(lambda: run.status == "cancelled", 5, "the background watcher to finish the run")
    finally:
        stuck.kill()
        stuck.wait()


def test_guard_sigkilled_kernel_falls_back_and_ends_tree(canaries: Canaries, sibling: runstop_nb.Run) -> None:
    canaries.start(["sleep", "1000"])
    run = start_tree("setsid sleep 1000 & sleep 1000", expect=2)
    guard = run._agent.guard  # type: ignore[union-attr]
    assert guard is not None
    guard.kill()
    assert run.wait(10) == "cancelled"
    assert run.error and "guard" in run.error
    assert_tree_dead(run)
    check_canaries(canaries, sibling)


def test_cooperative_tree_of_eleven_dies_on_term() -> None:
    run = start_tree("for i in 1 2 3 4 5 6 7 8 9 10; do sleep 1000 & done; wait", expect=11)
    result = run.stop()
    assert result.stopped and not result.escalated
    assert result.signalled >= 11
    assert_tree_dead(run)


def test_climb_on_empty_scope_signals_nothing() -> None:
    outcome = climb(Scope(cookie="no-such-cookie", started_at=time.time()), grace=1)
    assert outcome.signalled == 0 and not outcome.escalated and outcome.survivors == ()


def test_protected_pids_include_self_and_ancestors() -> None:
    prot = _ladder.protected_pids()
    assert os.getpid() in prot and os.getppid() in prot


def test_cleanup_helper_kills_by_pid() -> None:
    """The test harness itself must clean up by pid (sanity check of kill_pids)."""
    import subprocess

    p = subprocess.Popen(["sleep", "1000"])
    kill_pids([p.pid])
    p.wait(5)
    assert p.returncode == -signal.SIGKILL
