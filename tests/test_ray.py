"""The Ray backend (runstop_nb/_ray.py, runstop_nb/_proc/standalone.py) against a real local head.

Tests marked ``ray`` need a head and run only inside a network namespace of their own
(scripts/test-ray.sh makes one, starts a head, runs them, ends the head by its pid);
elsewhere they skip. ``test_ray_suite_in_its_own_namespace`` is how the normal run reaches
them: outside a namespace, with Ray installed and as root, it runs scripts/test-ray.sh
once and asserts that it passed. The unmarked tests need no head.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
from pathlib import Path

import psutil
import pytest

import runstop_nb
from runstop_nb import StartError
from runstop_nb._proc import standalone

from .helpers import PY, cookie_alive, kill_pids, wait_for

ROOT = Path(__file__).parent.parent
HAVE_RAY = subprocess.run([PY, "-c", "import ray.job_submission"], capture_output=True).returncode == 0


def in_own_netns() -> bool:
    """Only a loopback interface in this process's network namespace (read from /proc, not
    /sys, which shows the namespace that mounted it): Ray can bind to and reach nothing else."""
    try:
        with open("/proc/self/net/dev") as f:
            names = {line.split(":")[0].strip() for line in f.readlines()[2:]}
    except OSError:
        return False
    return names == {"lo"}


INSIDE = in_own_netns() or os.environ.get("RUNSTOP_NB_IN_NETNS") == "1"  # never start test-ray.sh from inside it


needs_head = pytest.mark.skipif(
    not (HAVE_RAY and in_own_netns() and os.environ.get("RUNSTOP_NB_RAY_ADDRESS")),
    reason="needs Ray, a network namespace of its own and a head: run scripts/test-ray.sh",
)

# An agent whose tree outlives a plain SIGTERM: a setsid'd child, a double-forked daemon
# and a child that ignores SIGTERM; it says "ready" once all three run.
TREE = textwrap.dedent("""
    import os, signal, subprocess, sys, time
    py = sys.executable
    subprocess.Popen([py, "-c", "import os, time; os.setsid(); time.sleep(300)"])
    subprocess.Popen([py, "-c", "import os, time\\nif os.fork() == 0:\\n os.setsid()\\n time.sleep(300)"])
    subprocess.Popen([py, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"])
    time.sleep(0.5)
    print("ready", flush=True)
    time.sleep(300)
""")


def _tree_ready(run: runstop_nb.Run) -> None:
    wait_for(lambda: "ready" in run.output(), timeout=60, what="the tree to start on the node")
    wait_for(lambda: len(cookie_alive(run.spec.cookie)) >= 4, timeout=10, what="4 processes with the cookie")


# -- no head needed --------------------------------------------------------------------


def test_import_runstop_nb_never_imports_ray() -> None:
    code = "import sys, runstop_nb; assert 'ray' not in sys.modules, 'ray was imported'"
    subprocess.run([PY, "-c", code], check=True, timeout=60)


def test_ray_backend_without_ray_is_one_line_start_error(tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import os, sys
        sys.modules["ray"] = None  # as if Ray were not installed
        import runstop_nb
        try:
            runstop_nb.start(["true"], backend="ray", ray_address="http://127.0.0.1:9")
        except runstop_nb.StartError as e:
            print(str(e))
        runs = os.path.join(os.environ["RUNSTOP_NB_HOME"], "runs")
        print(os.listdir(runs) if os.path.isdir(runs) else [])
    """)
    env = dict(os.environ, RUNSTOP_NB_HOME=str(tmp_path / "home"))
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, env=env, timeout=60, check=True).stdout
    message, leftovers = out.splitlines()
    assert "pip install 'runstop_nb[ray]'" in message
    assert leftovers == "[]"


def test_unknown_backend_and_stray_ray_options_are_invalid() -> None:
    with pytest.raises(runstop_nb.InvalidSpecError, match="backend must be local or ray"):
        runstop_nb.start(["true"], backend="k8s")
    with pytest.raises(runstop_nb.InvalidSpecError, match="need backend='ray'"):
        runstop_nb.start(["true"], ray_address="http://127.0.0.1:8265")
    assert runstop_nb.runs() == [] or all(r.done for r in runstop_nb.runs())


def test_marker_lines_round_trip_and_plain_lines_are_not_markers() -> None:
    line = standalone.MARK + 'verdict {"dead": true}\n'
    assert standalone.parse_marker(line) == ("verdict", {"dead": True})
    assert standalone.parse_marker("RUNSTOP_NB verdict {}\n") is None
    assert standalone.decode(standalone.encode({"argv": ["a b", "é"]})) == {"argv": ["a b", "é"]}


@pytest.mark.ray
@pytest.mark.timeout(600)
@pytest.mark.skipif(not HAVE_RAY, reason="Ray is not installed (pip install 'runstop_nb[ray]')")
@pytest.mark.skipif(INSIDE, reason="already inside the Ray namespace")
@pytest.mark.skipif(os.geteuid() != 0, reason="unshare -n needs root")
def test_ray_suite_in_its_own_namespace() -> None:
    """The normal run reaches the Ray tests through scripts/test-ray.sh, exactly once."""
    proc = subprocess.run([str(ROOT / "scripts" / "test-ray.sh"), "-q", "-k", "not in_its_own_namespace"],
                          capture_output=True, text=True, timeout=580)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and " skipped" not in proc.stdout.splitlines()[-1], proc.stdout[-2000:]


# -- against the head (inside the namespace) ---------------------------------------------


@pytest.mark.ray
@needs_head
def test_ray_run_streams_output_into_its_log_and_completes() -> None:
    code = "import sys, time\nfor i in range(3):\n print('line', i, flush=True); time.sleep(0.3)\nprint('err', file=sys.stderr)"
    run = runstop_nb.start([PY, "-c", code], backend="ray")
    assert run.backend == "ray"
    wait_for(lambda: "line 0" in run.output(), timeout=30, what="the first line in the run's log")
    assert run.wait(60) == "completed"
    assert run.returncode == 0
    out = run.output()
    assert out.splitlines() == ["line 0", "line 1", "line 2", "err"]  # Ray's header and our markers are not output
    assert standalone.MARK not in out
    assert cookie_alive(run.spec.cookie) == []


@pytest.mark.ray
@needs_head
def test_ray_failure_maps_to_failed_with_its_exit_code() -> None:
    run = runstop_nb.start([PY, "-c", "import sys; print('bye'); sys.exit(3)"], backend="ray")
    assert run.wait(60) == "failed"
    assert run.returncode == 3
    assert "bye" in run.output()


@pytest.mark.ray
@needs_head
def test_ray_stop_kills_setsid_daemon_and_term_ignorer_checked_by_cookie() -> None:
    run = runstop_nb.start([PY, "-c", TREE], backend="ray", grace=1.0)
    try:
        _tree_ready(run)
        result = run.stop()
        assert result.stopped and result.reason == "stopped", str(result)
        assert run.status == "cancelled"
        assert result.escalated  # the TERM-ignorer needed SIGKILL
        assert result.verified_by == "subreaper"
        assert result.note is not None and "the node's guard verified its tree dead" in result.note
        assert cookie_alive(run.spec.cookie) == []  # from outside: nothing with the cookie is left
        assert run.stop().reason == "already_terminal"
    finally:
        kill_pids(cookie_alive(run.spec.cookie))


@pytest.mark.ray
@needs_head
def test_ray_timeout_maps_to_timed_out() -> None:
    run = runstop_nb.start([PY, "-c", "import time; print('go', flush=True); time.sleep(300)"], backend="ray",
                           timeout=3, grace=0.5)
    assert run.wait(60) == "timed_out"
    assert run.last_stop is not None and run.last_stop.stopped
    assert cookie_alive(run.spec.cookie) == []


@pytest.mark.ray
@needs_head
def test_ray_guard_sigkilled_the_watchdog_sweeps_the_tree() -> None:
    """The job's driver dies (Ray SIGKILLs it, or its runner dies): the watchdog ends the tree."""
    run = runstop_nb.start([PY, "-c", TREE], backend="ray", grace=1.0)
    try:
        _tree_ready(run)
        guard = psutil.Process(run.pid).ppid()
        assert "standalone" in " ".join(psutil.Process(guard).cmdline())
        os.kill(guard, signal.SIGKILL)
        wait_for(lambda: cookie_alive(run.spec.cookie) == [], timeout=15, what="the watchdog's sweep")
        run.wait(30)
        assert run.done and run.status == "cancelled"
        assert run.error is not None and "guard" in run.error
    finally:
        kill_pids(cookie_alive(run.spec.cookie))


@pytest.mark.ray
@needs_head
def test_ray_history_row_records_the_backend() -> None:
    from runstop_nb._recorder import run_row

    run = runstop_nb.start([PY, "-c", "print('hi')"], backend="ray")
    assert run.wait(60) == "completed"
    assert json.loads(run_row(run)["options"])["backend"] == "ray"
    local = runstop_nb.start([PY, "-c", "print('hi')"])
    local.wait(30)
    assert json.loads(run_row(local)["options"])["backend"] == "local"


@pytest.mark.ray
@needs_head
def test_ray_bad_address_is_one_line_error_leaving_nothing(runs_home: Path) -> None:
    before = runstop_nb.runs()
    with pytest.raises(StartError) as info:
        runstop_nb.start([PY, "-c", "print(1)"], name="nowhere", backend="ray", ray_address="http://127.0.0.1:9")
    message = str(info.value)
    assert "\n" not in message and "no Ray cluster answers at http://127.0.0.1:9" in message
    assert runstop_nb.runs() == before
    runs = runs_home / "runs"
    assert not runs.exists() or list(runs.iterdir()) == []


@pytest.mark.ray
@needs_head
def test_ray_missing_command_fails_before_any_job_is_submitted() -> None:
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(os.environ["RUNSTOP_NB_RAY_ADDRESS"])
    jobs = len(client.list_jobs())
    with pytest.raises(runstop_nb.CommandNotFoundError):
        runstop_nb.start(["no-such-command-runstop"], backend="ray")
    assert len(client.list_jobs()) == jobs


@pytest.mark.ray
@pytest.mark.kernel
@needs_head
@pytest.mark.parametrize("detach", [False, True])
def test_ray_runs_stop_within_15_s_of_the_kernels_death_unless_detached(tmp_path: Path, detach: bool) -> None:
    """A keeper on the kernel's machine stops the job through Ray's REST API when the
    kernel dies; the node's guard then ends the whole tree. ``detach`` keeps it running."""
    from .kernel import kernel

    cookie = ""
    try:
        with kernel(tmp_path, {"RUNSTOP_NB_HOME": str(tmp_path / "home")}) as k:
            k.ok(f"import runstop_nb, sys\nr = runstop_nb.start([sys.executable, '-c', {TREE!r}], "
                 f"backend='ray', grace=0.5, ray_options={{'detach': {detach}}})")
            cookie = k.eval("r.spec.cookie")
            wait_for(lambda: "ready" in k.eval("r.output()"), timeout=60, what="the tree to start on the node")
            wait_for(lambda: len(cookie_alive(cookie)) >= 4, timeout=10, what="4 processes with the cookie")
            psutil.Process(k.pid).kill()
            wait_for(lambda: not psutil.pid_exists(k.pid) or psutil.Process(k.pid).status() == "zombie", 10,
                     "the kernel to die")
            if detach:
                import time

                time.sleep(8)
                assert len(cookie_alive(cookie)) >= 4, "a detached run outlives its kernel"
            else:
                wait_for(lambda: cookie_alive(cookie) == [], 15, "the tree to die within 15 s of the kernel")
    finally:
        kill_pids(cookie_alive(cookie))
