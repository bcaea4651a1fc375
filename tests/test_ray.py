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

from .helpers import FORKCHAIN, PY, assert_chain_dead, beats, cookie_alive, kill_pids, wait_for

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


# An agent that answers SIGTERM by starting helpers (a setsid'd TERM-ignorer and a
# double-forked daemon), records their pids, then exits: born during the stop.
SPAWN_ON_TERM = textwrap.dedent("""
    import os, signal, subprocess, sys, time
    pids = sys.argv[1]
    def on_term(signum, frame):
        a = subprocess.Popen([sys.executable, "-c",
            "import os, signal, time; os.setsid(); signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"])
        b = subprocess.Popen([sys.executable, "-c",
            "import os, sys, time\\nif os.fork() == 0:\\n os.setsid(); open(sys.argv[1], 'a').write(f'{os.getpid()}\\\\n'); time.sleep(300)",
            pids])
        with open(pids, "a") as f:
            f.write(f"{a.pid}\\n")
        b.wait()
        time.sleep(0.2)
        sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)
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
    """The timeout counts from the submission (starting a job takes Ray seconds): 20 s."""
    run = runstop_nb.start([PY, "-c", "import time; print('go', flush=True); time.sleep(300)"], backend="ray",
                           timeout=20, grace=0.5)
    assert run.wait(60) == "timed_out"
    assert run.elapsed >= 20, "not before its timeout"
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
        assert run.done and run.status == "failed"
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
def test_ray_missing_command_is_found_missing_on_the_node(runs_home: Path) -> None:
    """The node has its own PATH, so the node's guard is what says a command is missing:
    a one-line CommandNotFoundError, the job ended, no run and no log folder left."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(os.environ["RUNSTOP_NB_RAY_ADDRESS"])
    jobs = {j.submission_id for j in client.list_jobs()}
    before = runstop_nb.runs()
    with pytest.raises(runstop_nb.CommandNotFoundError) as info:
        runstop_nb.start(["no-such-command-runstop"], backend="ray")
    assert str(info.value) == ("command not found on the Ray node: 'no-such-command-runstop'; "
                               "check the name and the node's PATH")
    assert runstop_nb.runs() == before
    runs = runs_home / "runs"
    assert not runs.exists() or list(runs.iterdir()) == []
    new = [j.submission_id for j in client.list_jobs() if j.submission_id not in jobs]
    assert len(new) == 1 and new[0] is not None
    job_id = new[0]
    wait_for(lambda: client.get_job_status(job_id) in (JobStatus.FAILED, JobStatus.STOPPED), 30, "the job to end")


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


@pytest.mark.ray
@needs_head
@pytest.mark.parametrize("variant", ["same", "setsid", "pgrp"])
def test_ray_stop_ends_a_term_ignoring_fork_chain_under_a_live_root(variant: str, tmp_path: Path) -> None:
    """The chain's generations live ~1 ms each; the node's subreaper adopts every orphan."""
    for trial in range(2):
        beat = tmp_path / f"{variant}-{trial}.beat"
        run = runstop_nb.start(["bash", "-c", f"{PY} {FORKCHAIN} {variant} {beat} & sleep 1000"],
                               backend="ray", grace=0.5)
        try:
            wait_for(lambda: beats(beat) >= 20, 60, "the chain to run 20 generations on the node")  # noqa: B023
            result = run.stop()
            assert result.stopped and result.escalated, f"trial {trial}: {result}"
            assert result.verified_by == "subreaper" and run.status == "cancelled"
            assert_chain_dead(run, beat)
        finally:
            kill_pids(cookie_alive(run.spec.cookie))


@pytest.mark.ray
@needs_head
def test_ray_stop_ends_helpers_the_agent_starts_during_the_stop(tmp_path: Path) -> None:
    pids = tmp_path / "helpers.pids"
    run = runstop_nb.start([PY, "-c", SPAWN_ON_TERM, str(pids)], backend="ray", grace=1.0)
    born: list[int] = []
    try:
        wait_for(lambda: "ready" in run.output(), 60, "the agent to start on the node")
        result = run.stop()
        assert result.stopped and result.reason == "stopped", str(result)
        born = [int(p) for p in pids.read_text().split()]
        assert len(born) >= 2, "the agent started its helpers during the stop"
        assert [p for p in born if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"] == []
        assert cookie_alive(run.spec.cookie) == []
    finally:
        kill_pids(cookie_alive(run.spec.cookie))
        kill_pids(born)


@pytest.mark.ray
@needs_head
def test_ray_job_pending_beyond_its_timeout_is_one_line_error_leaving_nothing(runs_home: Path) -> None:
    """No GPU on the head: the job waits for one; the run's timeout bounds that wait."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(os.environ["RUNSTOP_NB_RAY_ADDRESS"])
    before, jobs = runstop_nb.runs(), {j.submission_id for j in client.list_jobs()}
    with pytest.raises(StartError) as info:
        runstop_nb.start([PY, "-c", "print(1)"], backend="ray", timeout=3, ray_options={"num_gpus": 1})
    message = str(info.value)
    assert "\n" not in message and "did not start within its timeout of 3 s and will not run the agent" in message
    assert "PENDING" in message
    assert runstop_nb.runs() == before
    runs = runs_home / "runs"
    assert not runs.exists() or list(runs.iterdir()) == []
    new = [j for j in client.list_jobs() if j.submission_id not in jobs]
    assert len(new) == 1 and new[0].submission_id is not None
    # Ray holds a stop of a job it has not scheduled until it would run; if it ever runs,
    # its guard sees the start deadline has passed and runs nothing.
    assert client.get_job_status(new[0].submission_id) in (JobStatus.PENDING, JobStatus.STOPPED)


def test_a_guard_that_boots_after_its_start_deadline_runs_nothing(tmp_path: Path) -> None:
    """The node side of the above, without Ray: the standalone guard refuses a late start."""
    marker = tmp_path / "ran"
    payload = {"run_id": "late", "argv": ["touch", str(marker)], "cwd": str(tmp_path), "cookie": "c" * 32,
               "grace": 0.5, "env_overrides": {}, "start_by": 1.0}
    proc = subprocess.run([PY, "-S", "-c", standalone.boot_code(), standalone.encode(payload)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 125
    kind, body = standalone.parse_marker(proc.stdout.rstrip("\n").split("\n")[-1]) or ("", {})  # \x1e splits lines
    assert kind == "error" and body["stage"] == "late"
    assert not marker.exists()


@pytest.mark.ray
@needs_head
def test_ray_cluster_of_another_major_version_is_one_line_error(runs_home: Path) -> None:
    """A dashboard that says it runs Ray 1.13: refused before any job, with what to do."""
    import http.server
    import threading

    class Old(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"ray_version": "1.13.0", "version": "2", "ray_commit": "x"}).encode()
            self.send_response(200 if self.path == "/api/version" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Old)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        address = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(StartError) as info:
            runstop_nb.start([PY, "-c", "print(1)"], backend="ray", ray_address=address)
        message = str(info.value)
        assert "\n" not in message and "runs Ray 1.13.0" in message and "Ray 2.8 or newer" in message
        assert runstop_nb.runs() == [] or all(r.backend == "local" or r.done for r in runstop_nb.runs())
        runs = runs_home / "runs"
        assert not runs.exists() or list(runs.iterdir()) == []
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.ray
@needs_head
def test_ray_magic_options_reach_the_job_and_rerun_stays_on_ray() -> None:
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "runstop_nb")
    shell.run_line_magic("agent_run", f"--backend ray --num-cpus 1 --resources node:127.0.0.1=0.01 --name onray "
                                      f"--wait -- {PY} -c \"print('from the node')\"")
    run = runstop_nb.get("onray")
    assert run.backend == "ray" and run.status == "completed" and run.output() == "from the node\n"
    job = run.ray_job
    assert job is not None and job["job_id"] == f"runstop-{run.id}" and job["node"]
    assert run.ray_options == {"num_cpus": 1.0, "resources": {"node:127.0.0.1": 0.01}}
    # The head has 2 CPUs: a job that asks for 3 never gets them, so the option reached Ray.
    with pytest.raises(UsageError, match="did not start within its timeout of 2 s"):
        shell.run_line_magic("agent_run", f"--backend ray --num-cpus 3 --timeout 2 --name greedy -- {PY} -c pass")
    shell.run_line_magic("agent_run", f"--backend ray --name sleeper -- {PY} -c "
                                      "\"import time; print('up', flush=True); time.sleep(300)\"")
    sleeper = runstop_nb.get("sleeper")
    try:
        wait_for(lambda: "up" in sleeper.output(), 60, "the sleeper to start on the node")
        shell.run_line_magic("agent_stop", "sleeper")
        assert sleeper.status == "cancelled" and cookie_alive(sleeper.spec.cookie) == []
    finally:
        kill_pids(cookie_alive(sleeper.spec.cookie))
    again = run.rerun()
    assert again.wait(60) == "completed"
    assert again.backend == "ray" and again.ray_options == run.ray_options and again.id != run.id
    past = runstop_nb.load(run.id)
    assert past.backend == "ray" and past.ray_job == job
    third = past.rerun()
    assert third.wait(60) == "completed" and third.backend == "ray"


@pytest.mark.ray
@needs_head
@pytest.mark.timeout(300)
def test_ray_head_killed_the_run_ends_failed_with_the_reason_and_its_tree_dies(tmp_path: Path) -> None:
    """In a namespace and head of its own (tests/rayhead.py): SIGKILL the head's processes,
    not its workers. The run ends ``failed``, saying the head stopped answering; on the
    node, Ray's workers exit, the job's process group is killed with the guard, and the
    watchdog ends the agent's tree, checked from here by its cookie."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RUNSTOP_NB_RAY_INNER", "RUNSTOP_NB_IN_NETNS", "RUNSTOP_NB_RAY_ADDRESS",
                        "RUNSTOP_NB_RAY_HEAD_PID")}
    env["RUNSTOP_NB_HOME"] = str(tmp_path / "home")
    proc = subprocess.Popen([str(ROOT / "scripts" / "test-ray.sh"), "--run", PY, str(Path(__file__).parent / "rayhead.py"),
                             TREE], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    cookie = ""
    try:
        assert proc.stdout is not None
        lines = iter(proc.stdout.readline, "")
        first = next((line for line in lines if line.startswith("{")), "")  # after test-ray.sh's own lines
        assert first, proc.communicate(timeout=60)[1][-3000:]
        cookie = json.loads(first)["cookie"]
        assert len(cookie_alive(cookie)) >= 4
        killed = json.loads(next(lines))
        assert len(killed["killed"]) >= 3, killed  # ray start, the GCS, the raylet at least
        wait_for(lambda: cookie_alive(cookie) == [], 15, "the tree to die within 15 s of the head")
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-3000:]
        said = json.loads(out.splitlines()[-1])
        assert said["done"] and said["status"] == "failed", said
        assert "stopped answering" in said["error"], said
        assert said["stop"]["reason"] == "error" and not said["stop"]["stopped"], said  # it claims nothing
    finally:
        if proc.poll() is None:  # its own session, started above: the script, its driver, its head
            os.killpg(proc.pid, signal.SIGTERM)  # test-ray.sh's EXIT trap then ends what is left of its head
            proc.wait(60)
        kill_pids(cookie_alive(cookie))


@pytest.mark.ray
@pytest.mark.kernel
@needs_head
@pytest.mark.parametrize("how", ["load", "cli"])
def test_ray_detached_run_outlives_its_kernel_and_load_gives_a_live_handle_that_stops_it(
        tmp_path: Path, runs_home: Path, how: str) -> None:
    """Kernel A starts a detached Ray run and is SIGKILLed; here (another process, the same
    runs home) ``load(id)`` follows the job again: its output from the start, its node,
    and a Stop that ends the tree, verified by the node and checked from here. Or
    ``runstop stop ID`` in a terminal stops it through the cluster just the same."""
    from .kernel import kernel

    cookie = ""
    try:
        with kernel(tmp_path, {"RUNSTOP_NB_HOME": str(runs_home)}) as k:
            k.ok(f"import runstop_nb, sys\nr = runstop_nb.start([sys.executable, '-c', {TREE!r}], name='far', "
                 f"backend='ray', grace=0.5, ray_options={{'detach': True}})")
            cookie, run_id = k.eval("r.spec.cookie"), k.eval("r.id")
            wait_for(lambda: "ready" in k.eval("r.output()"), timeout=60, what="the tree to start on the node")
            psutil.Process(k.pid).kill()
            wait_for(lambda: not psutil.pid_exists(k.pid) or psutil.Process(k.pid).status() == "zombie", 10,
                     "the kernel to die")
        assert len(cookie_alive(cookie)) >= 4, "a detached run outlives its kernel"
        from runstop_nb._pastrun import past

        if how == "cli":
            runstop = str(Path(PY).parent / "runstop")
            out = subprocess.run([runstop, "stop", run_id], capture_output=True, text=True, timeout=120)
            assert out.returncode == 0, out.stdout + out.stderr
            assert "stopped through its cluster" in out.stdout and "guard verified its tree dead" in out.stdout, out.stdout
            assert cookie_alive(cookie) == []
            wait_for(lambda: past(run_id).status == "cancelled", 10, "the history to say cancelled")
            return
        live = runstop_nb.load(run_id)
        assert isinstance(live, runstop_nb.Run), f"a live handle, not {live!r}"
        assert live.status == "running" and live.name == "far" and live.backend == "ray"
        assert runstop_nb.get(run_id) is live and runstop_nb.load(run_id) is live
        assert live.ray_job is not None and live.ray_job["node"] and live.ray_job["job_id"] == f"runstop-{run_id}"
        wait_for(lambda: live.output() == "ready\n", 10, "the job's log, mirrored again from its start")
        result = live.stop()
        assert result.stopped and result.verified_by == "subreaper", str(result)
        assert live.status == "cancelled" and cookie_alive(cookie) == []
        wait_for(lambda: past(run_id).status == "cancelled", 10, "the history to say cancelled")
        assert past(run_id).output() == "ready\n"
    finally:
        kill_pids(cookie_alive(cookie))
