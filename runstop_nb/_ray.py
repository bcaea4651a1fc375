"""The Ray backend: each agent as a Ray job whose entrypoint is our own guard.

::

    kernel ── RayAgent: submit_job, tail_job_logs into the run's stdout.log, stop_job
     ·  (HTTP to the cluster's dashboard)
    node   ── Ray's job runner ── sh -c "exec python3 -S -c BOOT SPEC"
                                   └─ guard (_proc/standalone.py): subreaper; the ladder on SIGTERM
                                       └─ agent   own session; RUNSTOP_NB_COOKIE in its environment
           ── watchdog (own session, outside the tree): sweeps the cookie if the guard dies

Ray's ``stop_job`` alone signals a snapshot of the entrypoint's processes and misses
double-forked daemons and late children (docs/ray.md); here its SIGTERM reaches our
guard, which ends the whole tree and writes its verdict into the job's log as a marker
line. The kernel cannot see a remote node's processes, so a StopResult on Ray says what
the node's guard reported (``verified_by="subreaper"``, or ``"scan"`` for the watchdog),
no more. ``_proc`` is shipped to the node through ``runtime_env["py_modules"]``: the
node needs only a ``python3`` (standard library), not runstop_nb.

Ray is imported only here, and only when a Ray run starts: ``import runstop_nb`` never
loads it. Without Ray installed, asking for this backend is one StartError that says how
to install it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import shlex
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ._launcher import LaunchSpec
from ._proc import keeper, procfs, standalone
from ._proc.ladder import FORCE_BUDGET, Verdict
from .errors import CommandNotFoundError, InputError, InvalidSpecError, StartError

log = logging.getLogger("runstop_nb")
ADDRESS_VAR = "RUNSTOP_NB_RAY_ADDRESS"
PYTHON_VAR = "RUNSTOP_NB_RAY_PYTHON"  # the interpreter the guard runs with on the node
INSTALL_HINT = "pip install 'runstop_nb[ray]'"
START_TIMEOUT = 120.0  # seconds for a job to get resources, set up its runtime_env and start the agent
POLL = 0.1  # seconds between status and log polls while starting or stopping
STOP_SLACK = 5.0  # seconds beyond grace + force budget to wait for the guard's verdict
RAY_WAIT_SLACK = 8  # seconds Ray waits beyond the guard's grace before it SIGKILLs the guard
TAIL_RETRY = 0.25  # seconds before tailing a job's log again, when the tail ended before the job
HEAD_LOST_AFTER = 10.0  # seconds without an answer from the head before a run counts it gone
MIN_CLUSTER_RAY = (2, 8)  # entrypoint_memory and RAY_JOB_STOP_WAIT_TIME_S: what _submit relies on
TERMINAL_JOB = ("SUCCEEDED", "FAILED", "STOPPED")
OPTION_KEYS = ("num_cpus", "num_gpus", "memory", "resources", "runtime_env", "detach")


def resolve_address(address: str | None) -> str:
    """The dashboard URL: the argument, else ``$RUNSTOP_NB_RAY_ADDRESS``, else ``$RAY_ADDRESS``."""
    raw = (address or os.environ.get(ADDRESS_VAR) or os.environ.get("RAY_ADDRESS") or "").strip()
    if not raw:
        raise InvalidSpecError(f"no Ray address: pass ray_address= (e.g. http://head:8265) or set {ADDRESS_VAR}")
    return raw if "://" in raw else f"http://{raw}"


def check_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Ray options: num_cpus, num_gpus, memory, resources, runtime_env (working_dir, env_vars...)."""
    opts = dict(options or {})
    unknown = sorted(set(opts) - set(OPTION_KEYS))
    if unknown:
        raise InvalidSpecError(f"unknown Ray option(s) {', '.join(unknown)}; use {', '.join(OPTION_KEYS)}")
    return opts


def _client(address: str) -> Any:
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError:
        raise StartError(f"the Ray backend needs Ray, which is not installed; {INSTALL_HINT}") from None
    cluster = _cluster_version(address)
    if cluster:
        check_version(address, cluster)  # before Ray's own check: its message is a paragraph
    try:
        client = JobSubmissionClient(address)
    except Exception as e:  # ConnectionError, ValueError, RuntimeError: Ray raises several
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StartError(f"no Ray cluster answers at {address} ({reason[:200]}); "
                         "check the address, or start a head with `ray start --head`") from None
    return client


def _cluster_version(address: str) -> str | None:
    """The cluster's Ray version from its dashboard (``/api/version``), or None if it will not say."""
    try:
        with urllib.request.urlopen(f"{address.rstrip('/')}/api/version", timeout=10) as answer:
            return str(json.load(answer).get("ray_version") or "") or None
    except Exception:  # no answer, or a proxy that wants credentials: Ray's client says what is wrong
        return None


def check_version(address: str, cluster: str) -> None:
    """A cluster whose Ray this backend cannot drive is one StartError, before any job."""
    import ray

    mine = str(ray.__version__)
    try:
        theirs = tuple(int(part) for part in cluster.split(".")[:2])
        ours = tuple(int(part) for part in mine.split(".")[:2])
    except ValueError:
        return  # a development build: nothing to compare
    said = f"the Ray cluster at {address} runs Ray {cluster} and this kernel has Ray {mine}"
    if theirs < MIN_CLUSTER_RAY:
        need = ".".join(map(str, MIN_CLUSTER_RAY))
        raise StartError(f"{said}; the Ray backend needs Ray {need} or newer on the cluster: upgrade it")
    if theirs[:1] != ours[:1]:
        raise StartError(f"{said}; use one major version on both: pip install 'ray[default]=={cluster}' here")


class LogMirror:
    """Copies the job's log into the run's stdout.log, minus Ray's own lines before the
    guard's ``begin``, and hands marker lines to ``on_marker``. Fed by position, so the
    live tail and a final ``get_job_logs`` can overlap without duplicating anything."""

    def __init__(self, path: Path, on_marker: Callable[[str, Any], None]) -> None:
        self._path = path
        self._on_marker = on_marker
        self._lock = threading.Lock()
        self._seen = 0  # characters of the job's log handled
        self._partial = ""
        self._begun = False

    def feed(self, text: str, at: int) -> int:
        """``text`` is the job's log from character ``at``; returns where it ends."""
        with self._lock:
            end = at + len(text)
            if end <= self._seen:
                return end
            new, self._seen = text[max(0, self._seen - at):], end
            *lines, self._partial = (self._partial + new).split("\n")
            self._handle([line + "\n" for line in lines])
            return end

    def flush(self) -> None:
        with self._lock:
            rest, self._partial = self._partial, ""
            if rest:
                self._handle([rest])

    def _handle(self, lines: list[str]) -> None:
        out: list[str] = []
        for line in lines:
            marker = standalone.parse_marker(line)
            if marker is not None:
                self._write(out)
                out = []
                self._begun = self._begun or marker[0] == "begin"
                self._on_marker(*marker)
            elif self._begun:
                out.append(line)
        self._write(out)

    def _write(self, lines: list[str]) -> None:
        if lines:
            with open(self._path, "a", encoding="utf-8", errors="replace") as f:
                f.write("".join(lines))


class RayAgent:
    """One agent running as a Ray job under our guard (the Agent protocol of ``_launcher``)."""

    backend = "ray"
    records_order = False
    input_fd: int | None = None

    def __init__(self, spec: LaunchSpec, address: str, options: Mapping[str, Any],
                 notify: Callable[[], None], start_timeout: float | None = None, adopt: bool = False) -> None:
        """Submit the run's job, or with ``adopt`` follow the job of that id already there."""
        if spec.stdin != "null":
            raise StartError("stdin and pty runs need the local backend; the Ray backend has no input channel")
        self.spec = spec
        self.address = address
        self.pid = 0
        self.containment = "guard"
        self.returncode: int | None = None
        self.node = ""
        self.job_id = f"runstop-{spec.run_id}"
        self.started_at = 0.0
        self._notify = notify
        self._client = _client(address)
        self._lock = threading.Lock()
        self._started = threading.Event()
        self._ended = threading.Event()
        self._verdict: Verdict | None = None
        self._error: dict[str, Any] | None = None
        self._lost: str | None = None
        self._head_lost: str | None = None  # the head stopped answering: no verdict can arrive
        self._start_timeout = start_timeout  # the run's --timeout also bounds a pending job
        self._start_limit = START_TIMEOUT if start_timeout is None else min(START_TIMEOUT, start_timeout)
        self._options = dict(options)
        self._closing = threading.Event()
        self._mirror = LogMirror(spec.logs.stdout, self._on_marker)
        if not adopt:
            self._submit(options)
        # An adopted job is a detached one (its kernel is gone; its keeper had stopped it otherwise).
        self._keeper = None if options.get("detach") or adopt else self._keep()
        self._tail = threading.Thread(target=self._tail_loop, name=f"runstop-ray-{spec.run_id}", daemon=True)
        self._tail.start()

    # -- starting ----------------------------------------------------------------------

    def _submit(self, options: Mapping[str, Any]) -> None:
        spec = self.spec
        env = spec.env  # the kernel's environment; only what the user set travels (see _overrides)
        # start_by: Ray cannot cancel a job still waiting for resources (its stop waits for the
        # job to be scheduled), so a guard that boots after the kernel gave up runs nothing.
        payload = {"run_id": spec.run_id, "argv": list(spec.argv), "cwd": spec.cwd, "cookie": spec.cookie,
                   "grace": spec.grace, "env_overrides": _overrides(env), "start_by": time.time() + self._start_limit}
        python = os.environ.get(PYTHON_VAR) or "python3"
        entrypoint = (f"exec {shlex.quote(python)} -S -c {shlex.quote(standalone.boot_code())} "
                      f"{standalone.encode(payload)}")
        runtime_env = dict(options.get("runtime_env") or {})
        env_vars = dict(runtime_env.get("env_vars") or {})
        # Ray SIGKILLs what it snapshotted after this long: let our guard's ladder finish first.
        env_vars.setdefault("RAY_JOB_STOP_WAIT_TIME_S", str(math.ceil(spec.grace + FORCE_BUDGET) + RAY_WAIT_SLACK))
        runtime_env["env_vars"] = env_vars
        proc_dir = str(Path(standalone.__file__).parent)
        runtime_env["py_modules"] = [*runtime_env.get("py_modules", []), proc_dir]
        try:
            self._client.submit_job(
                entrypoint=entrypoint, submission_id=self.job_id, runtime_env=runtime_env,
                metadata={"runstop_nb_run": spec.run_id},
                entrypoint_num_cpus=options.get("num_cpus"), entrypoint_num_gpus=options.get("num_gpus"),
                entrypoint_memory=options.get("memory"), entrypoint_resources=options.get("resources"))
        except Exception as e:
            raise StartError(f"Ray did not accept the job at {self.address}: {_first_line(e)}") from None

    def _keep(self) -> subprocess.Popen[bytes] | None:
        """The keeper (``_proc/keeper.py``): stops this job if the kernel dies first."""
        me = procfs.stat(os.getpid())
        if me is None:
            return None  # no /proc: the job outlives the kernel, as with detach
        try:
            return subprocess.Popen(
                [sys.executable, "-I", "-S", str(Path(keeper.__file__)), str(os.getpid()), str(me.start),
                 self.address, self.job_id],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, close_fds=True)
        except OSError as e:
            log.warning("runstop_nb: no keeper for Ray job %s (%s); it will outlive this kernel", self.job_id, e)
            return None

    def wait_started(self) -> None:
        """Block until the guard reports the agent running; StartError (job stopped) if not.

        A job may wait for resources: it gets the run's timeout (else START_TIMEOUT) to start."""
        limit = self._start_limit
        deadline = time.monotonic() + limit
        silent = _Silence()
        while not self._started.wait(POLL):
            status, message = self._status()
            gone = silent.heard(status != "UNKNOWN") > HEAD_LOST_AFTER
            if status in TERMINAL_JOB or time.monotonic() > deadline or gone:
                self._read_all()  # the guard's "error" may be in the log already
                if self._started.is_set():
                    break
                self._stop_job()
                said = f"status {status}" + (f": {message}" if message else "")
                if status in TERMINAL_JOB:
                    why = f"it ended {said}"
                elif gone:
                    why = f"the head at {self.address} stopped answering ({message})"
                else:  # a job Ray has not scheduled cannot be cancelled; its guard will refuse to run
                    within = f"its timeout of {limit:g} s" if limit == self._start_timeout else f"{limit:.0f} s"
                    why = f"it did not start within {within} and will not run the agent ({said})"
                raise StartError(f"the Ray job for {self.spec.argv[0]!r} never ran the agent; {why}")
            self._read_all()
        if self._error is not None:
            raise _start_error(self.spec, self._error)

    # -- the job's log -------------------------------------------------------------------

    def _on_marker(self, kind: str, body: Any) -> None:
        if not isinstance(body, dict):
            return
        if kind == "started":
            self.pid = int(body.get("pid") or 0)
            self.node = str(body.get("node") or "")
            self.containment = str(body.get("containment") or "guard")
            self._started.set()
        elif kind == "error":
            self._error = body
            self._started.set()
        elif kind == "exited":
            self.returncode = int(body["returncode"])
            self._notify()
        elif kind == "verdict" and not self._ended.is_set():
            if body.get("returncode") is not None and self.returncode is None:
                self.returncode = int(body["returncode"])
            if body.get("cause") == "guard_lost":
                self._lost = "the run's guard on the Ray node died"
            self._verdict = self._reported(Verdict.from_json(body))
            self._ended.set()
            self._notify()

    def _read_all(self) -> None:
        """The whole job log so far (``get_job_logs``): catches up on what the tail has not shown."""
        try:
            text = self._client.get_job_logs(self.job_id)
        except Exception as e:
            log.debug("runstop_nb: get_job_logs(%s) failed: %s", self.job_id, e)
            return
        self._mirror.feed(text, 0)

    def _tail_loop(self) -> None:
        """Tail thread: stream the job's log into stdout.log until the job ends; then settle."""
        polling = False  # tail_job_logs failed: read the whole log (get_job_logs) on a timer instead
        silent = _Silence()
        while not self._closing.is_set():
            if polling:
                self._read_all()
            else:
                try:
                    asyncio.run(self._tail_async())
                except Exception as e:  # e.g. a warning turned error inside Ray's aiohttp use
                    log.debug("runstop_nb: tailing %s failed (%s); polling its log instead", self.job_id, e)
                    polling = True
            # The tail also ends while a job is still pending (no log yet): start it again.
            if self._ended.is_set():
                break
            status, message = self._status()
            if status in TERMINAL_JOB:
                break
            if silent.heard(status != "UNKNOWN") > HEAD_LOST_AFTER:
                self._head_lost = (f"the Ray head at {self.address} stopped answering for "
                                   f"{HEAD_LOST_AFTER:.0f} s ({message})")
                break
            if self._closing.wait(TAIL_RETRY):
                break
        self._read_all()
        self._mirror.flush()
        if not self._ended.is_set() and not self._closing.is_set():
            if self._head_lost:
                self._lost = (f"{self._head_lost}; on the node, the run's watchdog ends its tree once the "
                              "job's runner is gone, but no verdict can reach this kernel")
            else:
                status, message = self._status()
                self._lost = f"the Ray job ended {status} without its guard's verdict ({message})"
            self._notify()

    async def _tail_async(self) -> None:
        """Stream the log; a second task only watches for release() (cancelling a pending
        read on a timer would close Ray's stream before its first chunk, which can take 1 s)."""
        task = asyncio.ensure_future(self._consume())
        while not task.done():
            if self._closing.is_set():
                task.cancel()
            await asyncio.wait([task], timeout=0.5)
        if not task.cancelled():
            task.result()

    async def _consume(self) -> None:
        at = 0
        async for chunk in self._client.tail_job_logs(self.job_id):
            at = self._mirror.feed(chunk, at)

    def _status(self) -> tuple[str, str]:
        try:
            info = self._client.get_job_info(self.job_id)
            return str(getattr(info.status, "value", info.status)), str(info.message or "")
        except Exception as e:
            return "UNKNOWN", _first_line(e)

    def _stop_job(self) -> None:
        try:
            self._client.stop_job(self.job_id)
        except Exception as e:  # already ended, or the head is gone: the verdict (or its absence) tells
            log.debug("runstop_nb: stop_job(%s): %s", self.job_id, e)

    # -- where it runs ------------------------------------------------------------------

    @property
    def start_kwargs(self) -> dict[str, Any]:
        """What ``start()`` needs to run a command on the same cluster, the same way (rerun)."""
        return {"backend": "ray", "ray_address": self.address, "ray_options": dict(self._options)}

    def placement(self) -> dict[str, str]:
        """The cluster's address, Ray's job id and the node the guard reported."""
        return {"address": self.address, "job_id": self.job_id, "node": self.node}

    # -- the Agent protocol ------------------------------------------------------------

    def interrupt(self) -> None:
        raise InputError("a Ray run cannot be interrupted (Ctrl+C); stop it instead")

    def members(self) -> list[int]:
        return []  # the node's processes are not this kernel's to see

    def ended(self) -> Verdict | None:
        return self._verdict if self._ended.is_set() else None

    def lost_reason(self) -> str | None:
        return self._lost

    def settle(self, grace: float) -> Verdict:
        return self._await_verdict(grace)

    def terminate(self, grace: float) -> Verdict:
        """Ray's stop_job: its SIGTERM reaches our guard, which runs the ladder (with the
        grace fixed at start) and writes its verdict into the job's log."""
        if not self._ended.is_set():
            self._stop_job()
        return self._await_verdict(self.spec.grace)

    def _await_verdict(self, grace: float) -> Verdict:
        deadline = time.monotonic() + grace + FORCE_BUDGET + STOP_SLACK
        if self._head_lost and not self._ended.is_set():
            deadline = 0.0  # nothing can arrive: say so at once
        while not self._ended.wait(POLL):
            status, _ = self._status()
            if status in TERMINAL_JOB:
                self._read_all()  # the verdict is the job's last line: read it now, not at the tail's pace
                if self._ended.is_set():
                    break
            if time.monotonic() > deadline or (status in TERMINAL_JOB and not self._tail.is_alive()):
                self._read_all()
                if self._ended.is_set():
                    break
                return Verdict(False, False, 0, 0.0, "", note=(
                    f"no verdict from the Ray node's guard (job {self.job_id} is {status}); "
                    "whether its tree is dead is unknown"))
        assert self._verdict is not None
        return self._verdict

    def _reported(self, verdict: Verdict) -> Verdict:
        """The verdict as this kernel may state it: reported by the node, not seen here."""
        said = "verified its tree dead" if verdict.dead else f"reported {len(verdict.survivors)} survivor(s)"
        who = "guard" if verdict.verified_by != "scan" else "watchdog (cookie sweep)"
        where = f"Ray job {self.job_id} on node {self.node or '?'}: the node's {who} {said}"
        return replace(verdict, note="; ".join(n for n in (where, verdict.note) if n))

    def release(self) -> None:
        """The run is over: read the job's log to its end, stop tailing."""
        self._read_all()
        self._mirror.flush()
        self._closing.set()
        self._tail.join(2.0)
        keeper_proc, self._keeper = self._keeper, None
        if keeper_proc is not None:  # our own child, by its Popen: never anything else
            keeper_proc.terminate()
            keeper_proc.wait(5)


class _Silence:
    """How long the head has not answered, fed one poll at a time."""

    def __init__(self) -> None:
        self._since: float | None = None

    def heard(self, answered: bool) -> float:
        """Record one poll; return the seconds of silence so far (0 after an answer)."""
        now = time.monotonic()
        if answered:
            self._since = None
            return 0.0
        if self._since is None:
            self._since = now
        return now - self._since


def _overrides(env: Mapping[str, str]) -> dict[str, str | None]:
    """What of the kernel's environment the agent gets on the node: the run's markers are
    set by the guard; the kernel's own PATH, venv and the like do not travel."""
    from ._spec import base_env

    base = base_env()
    skip = {"RUNSTOP_NB_COOKIE", "RUNSTOP_NB_OWNER", "RUNSTOP_NB_RUN_ID"}
    out: dict[str, str | None] = {k: v for k, v in env.items() if base.get(k) != v and k not in skip}
    out.update({k: None for k in base if k not in env and k not in skip})
    out.setdefault("PYTHONUNBUFFERED", "1")  # the log is the only way output reaches the kernel
    return out


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:300]


def _start_error(spec: LaunchSpec, error: dict[str, Any]) -> StartError:
    stage, errno_, message = str(error.get("stage")), int(error.get("errno") or 0), str(error.get("message"))
    cmd = spec.argv[0]
    if stage == "late":
        return StartError(f"the Ray job for {cmd!r} started after this kernel stopped waiting; it ran nothing")
    if stage == "exec" and errno_ == 2:
        return CommandNotFoundError(f"command not found on the Ray node: {cmd!r}; check the name and the node's PATH")
    return StartError(f"could not start {cmd!r} on the Ray node ({stage}): {message}")


class RayLauncher:
    """Starts each agent as a Ray job at ``address`` (a dashboard URL)."""

    def __init__(self, address: str | None = None, options: Mapping[str, Any] | None = None,
                 start_timeout: float | None = None) -> None:
        self.address = resolve_address(address)
        self.options = check_options(options)
        self.start_timeout = start_timeout
        try:
            import ray.job_submission  # noqa: F401
        except ImportError:
            raise StartError(f"the Ray backend needs Ray, which is not installed; {INSTALL_HINT}") from None

    def launch(self, spec: LaunchSpec, notify: Callable[[], None]) -> RayAgent:
        return self._started(RayAgent(spec, self.address, self.options, notify, self.start_timeout))

    def check_job(self, run_id: str) -> str:
        """The status of the run's job; StartError if the cluster does not answer or know it."""
        job_id = f"runstop-{run_id}"
        client = _client(self.address)
        try:
            info = client.get_job_info(job_id)
        except Exception as e:
            raise StartError(f"the Ray cluster at {self.address} does not know job {job_id} "
                             f"({_first_line(e)}); only its history remains") from None
        return str(getattr(info.status, "value", info.status))

    def adopt(self, spec: LaunchSpec, notify: Callable[[], None]) -> RayAgent:
        """Follow the run's job, already on the cluster: its log from the start, its verdict."""
        return self._started(RayAgent(spec, self.address, self.options, notify, adopt=True))

    def _started(self, agent: RayAgent) -> RayAgent:
        try:
            agent.wait_started()
        except BaseException:
            agent.release()
            raise
        return agent
