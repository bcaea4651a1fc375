"""Guards under attack and kernels that die: the warden, the guards and the cgroups together.

Agents here are hostile on purpose: they SIGSTOP or SIGKILL their own guard, start
descendants that drop the cookie (``env -i``) and leave the tree (double fork,
``setsid -f``), fork chains that ignore SIGTERM, and 1,500 TERM-ignorers. Everything is
checked from outside: by the cookie, by heartbeat files, and by the exact command line of
the escapees that carry no cookie. Kernel deaths use a stand-in kernel process
(``standin.py``), so trials can be repeated; test_kernel_matrix.py uses real kernels.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import runstop_nb
from runstop_nb._proc import procfs
from runstop_nb._proc.guard import DEATH_GRACE_CAP
from runstop_nb._proc.ladder import FORCE_BUDGET

from .helpers import FORKCHAIN, PY, TRIALS, alive, beats, cookie_alive, helpers_of, kill_pids, wait_for
from .standin import standin_kernel

DEATH_BOUND = 5.0  # seconds: every tree is dead within this of its kernel's death


def by_cmdline(argv: list[str]) -> list[int]:
    """Live pids whose command line is exactly ``argv`` (escapees without a cookie)."""
    want = "\0".join(argv).encode() + b"\0"
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if f.read() == want and alive(int(name)):
                    out.append(int(name))
        except OSError:
            continue
    return out


@pytest.fixture
def marker() -> Iterator[str]:
    """A unique sleep duration: it names escapees that carry no cookie; they are killed by pid after."""
    value = f"{random.randint(100000, 999999)}.{random.randint(100000, 999999)}"
    yield value
    kill_pids(by_cmdline(["sleep", value]) + by_cmdline(["sleep", value + "1"]))


def state(pid: int) -> str:
    st = procfs.stat(pid)
    return st.state if st else "gone"


def guard_gone(pid: int) -> bool:
    return state(pid) in ("gone", "Z", "X")


# -- the kernel lives ---------------------------------------------------------------------

def test_guard_stopped_by_its_agent_then_stop(mode: str) -> None:
    run = runstop_nb.start(["bash", "-c", "sleep 0.3; while :; do kill -STOP $PPID; sleep 0.2; done"], grace=1)
    guard = run._agent.guard  # type: ignore[union-attr]
    assert guard is not None
    wait_for(lambda: state(guard.pid) == "T", 10, "the agent to stop its guard")
    t0 = time.monotonic()
    result = run.stop()
    took = time.monotonic() - t0
    assert result.stopped and run.status == "cancelled", result
    assert took < 1 + 1.0, f"stop took {took:.2f} s, beyond grace + 1 s"
    assert result.note and "SIGSTOP" in result.note
    assert guard_gone(guard.pid), "the guard is gone once the run is done"
    assert cookie_alive(run.spec.cookie) == []


def test_guard_stopped_again_and_again_still_stops_within_bound(mode: str) -> None:
    """The agent re-stops its guard on every SIGTERM: the kernel takes over after the bound."""
    # Stopped again every 50 ms: the kernel continues a stopped guard, so a single SIGSTOP
    # would leave the test a window of a few milliseconds to see state T.
    script = "trap 'kill -STOP $PPID' TERM; while :; do kill -STOP $PPID; sleep 0.05; done"
    run = runstop_nb.start(["bash", "-c", script], grace=0.3)
    guard = run._agent.guard  # type: ignore[union-attr]
    assert guard is not None
    wait_for(lambda: state(guard.pid) == "T", 10, "the agent to stop its guard")
    t0 = time.monotonic()
    result = run.stop()
    assert result.stopped, result
    assert time.monotonic() - t0 < 0.3 + 1.0 + 2.0
    assert cookie_alive(run.spec.cookie) == []
    assert guard_gone(guard.pid)


def test_stopped_guard_is_continued_while_the_run_lives(mode: str) -> None:
    run = runstop_nb.start(["bash", "-c", "kill -STOP $PPID; sleep 0.5; exit 7"], grace=0.5)
    guard = run._agent.guard  # type: ignore[union-attr]
    assert guard is not None
    assert run.wait(10) == "failed" and run.returncode == 7, "the guard was continued and reported the exit"


def test_guard_killed_by_its_agent_leaves_no_escapee(mode: str, marker: str) -> None:
    """``kill -9 $PPID`` after starting descendants that drop the cookie and leave the tree."""
    script = (f"env -i sh -c '(sleep {marker} &)'; setsid -f env -i sleep {marker}1; "
              f"sleep 0.3; kill -9 $PPID; sleep 1000")
    run = runstop_nb.start(["bash", "-c", script], grace=0.5)
    wait_for(lambda: by_cmdline(["sleep", marker]) and by_cmdline(["sleep", marker + "1"]), 10, "the escapees")
    assert run.wait(10) == "failed"
    assert run.last_stop is not None and run.last_stop.cause == "guard_lost" and run.last_stop.stopped
    wait_for(lambda: not by_cmdline(["sleep", marker]) and not by_cmdline(["sleep", marker + "1"]),
             DEATH_BOUND, "the env -i escapees to die")
    assert cookie_alive(run.spec.cookie) == []


def test_pkill_python_does_not_stop_every_run(mode: str) -> None:
    """An agent running ``pkill python`` sends SIGTERM to the guard and the warden: both ignore it."""
    run = runstop_nb.start(["sleep", "1000"])
    agent = run._agent
    guard = agent.guard  # type: ignore[union-attr]
    assert guard is not None
    os.kill(guard.pid, signal.SIGTERM)
    os.kill(agent._link.pid, signal.SIGTERM)  # type: ignore[union-attr]
    time.sleep(0.3)
    assert run.status == "running" and alive(run.pid or 0) and guard.alive()


def test_no_guard_mode_sweeps_by_cookie_and_counts_right(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNSTOP_NB_NO_GUARD", "1")
    run = runstop_nb.start(["bash", "-c", "setsid -f sleep 1000; sleep 1000"], grace=0.5)
    assert run.containment == "none"
    wait_for(lambda: len(cookie_alive(run.spec.cookie)) == 2, 10, "the root and its setsid'd escapee")
    result = run.stop()
    assert result.stopped and result.verified_by == "scan"
    assert result.signalled == 2, f"the root and the escapee were both signalled: {result}"
    assert result.swept >= 1, "the escapee left the tree: only the cookie sweep finds it"
    assert cookie_alive(run.spec.cookie) == []


@pytest.mark.races
def test_1500_term_ignorers_stop_within_grace_plus_one_second(mode: str) -> None:
    run = runstop_nb.start(["bash", "-c", "trap '' TERM; for i in $(seq 1500); do sleep 1000 & done; wait"],
                           grace=1)
    try:
        wait_for(lambda: len(run.member_pids()) >= 1501, 60, "1,500 sleeps")
        t0 = time.monotonic()
        result = run.stop()
        took = time.monotonic() - t0
        assert result.stopped and result.escalated and result.signalled >= 1501
        print(f"\n{mode}: 1,500 TERM-ignorers stopped in {took:.2f} s at grace 1 s ({result.signalled} signalled)")
        assert took <= 1 + 1.0, f"stopping 1,500 TERM-ignorers took {took:.2f} s (bound: grace + 1 s)"
        assert cookie_alive(run.spec.cookie) == []
    finally:
        kill_pids(cookie_alive(run.spec.cookie))


# -- the kernel dies ------------------------------------------------------------------------

def chains_quiet(beat_files: list[Path], quiet: float = 0.05) -> bool:
    """No chain wrote a heartbeat for ``quiet`` seconds (a live generation beats every ~1 ms)."""
    before = [beats(b) for b in beat_files]
    time.sleep(quiet)
    return [beats(b) for b in beat_files] == before


def dead_within(check: object, bound: float = DEATH_BOUND) -> float:
    """Seconds until ``check()`` holds; fails beyond ``bound``."""
    t0 = time.monotonic()
    wait_for(check, bound, "the trees to die after the kernel")  # type: ignore[arg-type]
    return time.monotonic() - t0


@pytest.mark.races
@pytest.mark.parametrize("variant", ["same", "setsid", "pgrp"])
def test_fork_chains_die_within_5s_of_kernel_sigkill(mode: str, variant: str, tmp_path: Path) -> None:
    per_kernel = 4  # chains per stand-in kernel: TRIALS chains in all, each checked on its own
    for batch in range(0, TRIALS, per_kernel):
        beat_files = [tmp_path / f"{variant}-{batch + i}.beat" for i in range(per_kernel)]
        specs = [{"cmd": [PY, FORKCHAIN, variant, str(b)], "grace": 0.3} for b in beat_files]
        with standin_kernel(specs, tmp_path / "home", {"RUNSTOP_NB_CONTAINMENT": mode}) as kernel:
            wait_for(lambda: all(beats(b) >= 20 for b in beat_files), 20, "every chain to run")  # noqa: B023
            kernel.kill()
            cookies = [r.cookie for r in kernel.runs]
            # One /proc scan can miss a generation born after its listdir (the very race a
            # snapshot loses), so dead means: no heartbeat for 50 ms, *then* no cookie.
            took = dead_within(lambda: chains_quiet(beat_files) and all(not cookie_alive(c) for c in cookies))  # noqa: B023
            print(f"{mode}/{variant} batch {batch}: dead {took:.2f} s after the kernel's SIGKILL")
            wait_for(lambda: not helpers_of(kernel.pid), DEATH_BOUND, "the warden and guards to exit")


def test_kernel_death_cuts_short_the_grace_of_a_run_already_ending(mode: str, tmp_path: Path) -> None:
    """The root exited, so its guard is giving the leftovers the run's own grace (30 s here)
    when the kernel dies: the grace ends within DEATH_GRACE_CAP of the death, as if the
    kernel had died first. Before, the guard did not see the death; the warden ended the
    tree at 2.6 s (cgroup) or 4.6 s (guard mode)."""
    stubborn = f"{PY} -c 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(1000)'"
    with standin_kernel([{"cmd": ["bash", "-c", f"setsid {stubborn} & sleep 0.3; exit 0"], "grace": 30}],
                        tmp_path / "home", {"RUNSTOP_NB_CONTAINMENT": mode}) as kernel:
        (run,) = kernel.runs
        wait_for(lambda: not alive(run.pid), 10, "the root to exit (its guard then asks the leftovers to go)")
        assert cookie_alive(run.cookie), "the TERM-ignorer outlives the root, within the run's grace"
        kernel.kill()
        took = dead_within(lambda: not cookie_alive(run.cookie))
        print(f"{mode}: the leftover was dead {took:.2f} s after the kernel's SIGKILL")
        assert took < DEATH_GRACE_CAP + FORCE_BUDGET + 0.5, f"{took:.2f} s: the guard did not see the kernel die"


def test_guard_stopped_then_kernel_sigkill(mode: str, tmp_path: Path) -> None:
    """The parent-death wake-up stays pending on a stopped guard: the warden continues it,
    then kills it if need be, and ends the tree (cgroup.kill in cgroup mode)."""
    with standin_kernel([{"cmd": ["bash", "-c", "setsid sleep 1000 & sleep 0.3; while :; do kill -STOP $PPID; sleep 0.2; done"],
                          "shell": False, "grace": 1}],
                        tmp_path / "home", {"RUNSTOP_NB_CONTAINMENT": mode}) as kernel:
        (run,) = kernel.runs
        wait_for(lambda: state(run.guard) == "T", 10, "the agent to stop its guard")
        wait_for(lambda: len(cookie_alive(run.cookie)) >= 2, 10, "the tree")
        kernel.kill()
        took = dead_within(lambda: not cookie_alive(run.cookie))
        assert took < DEATH_BOUND
        wait_for(lambda: not helpers_of(kernel.pid), DEATH_BOUND, "the warden and guard to exit")
        if run.cgroup:
            wait_for(lambda: not os.path.exists(run.cgroup or ""), 5, "the run's cgroup to be removed")


def test_guard_stopped_again_and_again_then_kernel_sigkill(mode: str, tmp_path: Path) -> None:
    script = "trap 'kill -STOP $PPID' TERM; kill -STOP $PPID; while :; do kill -STOP $PPID; sleep 0.01; done"
    with standin_kernel([{"cmd": ["bash", "-c", script], "grace": 1}], tmp_path / "home",
                        {"RUNSTOP_NB_CONTAINMENT": mode}) as kernel:
        (run,) = kernel.runs
        wait_for(lambda: state(run.guard) == "T", 10, "the agent to stop its guard")
        kernel.kill()
        dead_within(lambda: not cookie_alive(run.cookie))


def test_guard_killed_then_kernel_sigkill_leaves_no_escapee(mode: str, tmp_path: Path, marker: str) -> None:
    script = (f"env -i sh -c '(sleep {marker} &)'; setsid -f env -i sleep {marker}1; "
              f"sleep 0.3; kill -9 $PPID; sleep 1000")
    with standin_kernel([{"cmd": ["bash", "-c", script], "grace": 1}], tmp_path / "home",
                        {"RUNSTOP_NB_CONTAINMENT": mode}) as kernel:
        wait_for(lambda: by_cmdline(["sleep", marker]) and by_cmdline(["sleep", marker + "1"]), 10, "the escapees")
        wait_for(lambda: guard_gone(kernel.runs[0].guard), 10, "the agent to kill its guard")
        kernel.kill()
        dead_within(lambda: not by_cmdline(["sleep", marker]) and not by_cmdline(["sleep", marker + "1"]))


@pytest.mark.races
def test_1500_term_ignorers_die_within_5s_of_kernel_sigkill(mode: str, tmp_path: Path) -> None:
    script = "trap '' TERM; for i in $(seq 1500); do sleep 1000 & done; wait"
    with standin_kernel([{"cmd": ["bash", "-c", script], "grace": 3}], tmp_path / "home",
                        {"RUNSTOP_NB_CONTAINMENT": mode}) as kernel:
        (run,) = kernel.runs
        wait_for(lambda: len(cookie_alive(run.cookie)) >= 1501, 60, "1,500 sleeps")
        kernel.kill()
        took = dead_within(lambda: not cookie_alive(run.cookie))
        print(f"\n{mode}: 1,500 TERM-ignorers dead {took:.2f} s after the kernel's SIGKILL (grace 3 s, capped at 2)")
        assert took < DEATH_BOUND


def test_warden_and_guards_exit_with_their_kernel(mode: str, tmp_path: Path) -> None:
    with standin_kernel([{"cmd": ["sleep", "1000"]}, {"cmd": ["sleep", "1000"]}], tmp_path / "home",
                        {"RUNSTOP_NB_CONTAINMENT": mode}) as kernel:
        assert len(helpers_of(kernel.pid)) == 3  # the warden and two guards
        kernel.kill()
        dead_within(lambda: all(not cookie_alive(r.cookie) for r in kernel.runs) and not helpers_of(kernel.pid))
        for run in kernel.runs:
            if run.cgroup:
                assert not os.path.exists(os.path.dirname(run.cgroup)), "the kernel's cgroup was removed"
                assert psutil.pid_exists(run.pid) is False or not alive(run.pid)
