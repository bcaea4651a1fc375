"""The module-level API: start, get, runs, stop_all."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from . import _spec, _worktree
from ._home import run_dir
from ._kernelstate import kernel_state
from ._launcher import NO_GUARD_VAR, Launcher, LaunchSpec
from ._logs import LogFiles
from ._proc import procfs
from ._registry import registry
from ._results import StopResult
from ._run import Run
from ._supervisor import supervisor
from .errors import InvalidSpecError, StartError

NEW_RUN = "new_run"  # hook event: a run has started (the history records it)


def start(
    cmd: Sequence[str] | str,
    *,
    name: str | None = None,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str | None] | None = None,
    timeout: float | None = None,
    grace: float | None = None,
    shell: bool = False,
    key: str | None = None,
    containment: str | None = None,
    stdin: bool = False,
    pty: bool = False,
    format: str = "auto",
    idle: float | None = None,
    max_cost: float | None = None,
    max_tokens: int | None = None,
    worktree: bool = False,
    parent: str | None = None,
    backend: str = "local",
    ray_address: str | None = None,
    ray_options: Mapping[str, Any] | None = None,
) -> Run:
    """Start an agent; return its Run once the agent process is running.

    ``cmd`` is a list of arguments, or with ``shell=True`` a string for ``$SHELL -c``.
    ``env`` adds to (a None value removes from) the kernel's environment. ``timeout`` stops
    the run after that many seconds (it ends ``timed_out``); ``grace`` is how long a stop
    waits between SIGTERM and SIGKILL (default 3 s). ``containment`` (default
    ``$RUNSTOP_NB_CONTAINMENT``, else ``auto``): ``cgroup`` or ``guard``, see the README.

    ``stdin=True`` keeps a pipe to the agent's stdin (``run.send``); ``pty=True`` runs it
    in a pseudo-terminal (output as a terminal shows it, input through it). ``format``
    (auto, claude, codex, gemini, text) is how stdout is read: as an agent's event stream,
    with ``run.agent`` and ``run.cards()``. ``max_cost`` (USD) and ``max_tokens`` stop the
    run once exceeded; ``idle`` is how many seconds of silence show it as idle.
    ``worktree=True`` runs the agent in a git worktree of its own (``run.diff()``).
    ``backend="ray"`` runs it as a job on the Ray cluster at ``ray_address`` (default
    ``$RUNSTOP_NB_RAY_ADDRESS``, then ``$RAY_ADDRESS``); ``ray_options`` passes num_cpus,
    num_gpus, memory, resources and runtime_env to Ray (docs/ray.md).
    Raises InvalidSpecError, StartError (CommandNotFoundError), NameInUseError or
    WorktreeError, leaving nothing behind.
    """
    spec = _spec.build(cmd, name=name, cwd=cwd, env=env, timeout=timeout, grace=grace, shell=shell,
                       containment=containment, stdin=stdin, pty=pty, format=format, idle=idle,
                       max_cost=max_cost, max_tokens=max_tokens, worktree=worktree, parent=parent,
                       here=backend != "ray")
    # A missing Ray fails here, before anything is made; a Ray job gets the run's timeout to start.
    launcher = launcher_for(backend, ray_address, ray_options, start_timeout=spec.timeout)
    reg = registry()
    with reg.reserve(spec.name, _default_name(spec)) as chosen:
        try:
            logs = LogFiles(run_dir(spec.id)).create()
        except OSError as e:
            raise StartError(f"cannot create the run's log folder ({e.strerror or e}: {e.filename}); "
                             "check that the runs home is writable, or set RUNSTOP_NB_HOME") from None
        tree, agent_cwd, env_ = None, spec.cwd, spec.agent_env()
        try:
            if spec.worktree:
                tree = _worktree.create(spec.cwd, chosen, spec.id)
                agent_cwd = _worktree.workdir_for(tree, spec.cwd)
                for var in _worktree.GIT_LOCATION_VARS:  # the agent's git must find its worktree
                    env_.pop(var, None)
            sup = supervisor()
            run = Run(spec, chosen, logs, sup, key=key, restart=start, worktree=tree)
            launch = LaunchSpec(
                run_id=spec.id, argv=spec.argv, cwd=agent_cwd, env=env_, logs=logs,
                cookie=spec.cookie, grace=spec.grace, started_at=run.started_at.timestamp(),
                containment=spec.containment, stdin="pty" if spec.pty else "pipe" if spec.stdin else "null",
            )
            agent = launcher.launch(launch, run.on_agent_event)
        except BaseException:
            shutil.rmtree(logs.dir, ignore_errors=True)  # nothing ran; leave no trace
            if tree is not None:
                try:
                    _worktree.remove(tree, force=True)
                except Exception:  # the start's own error is the one to report
                    pass
            raise
        reg.add(run, key)
    run.attach(agent)
    kernel_state().fire(NEW_RUN, run)  # the history records it (after attach: the row has the pid)
    return run


def adopt(spec: _spec.RunSpec, name: str, log_dir: Path, started_at: datetime,
          ray_address: str, ray_options: Mapping[str, Any] | None = None) -> Run:
    """A live handle on a Ray run that a kernel now gone started (``load(id)``, docs/ray.md).

    The job must still be known to its cluster (else StartError, and nothing changes). Its
    log is then mirrored again from the job's whole log, and the run is this kernel's: it
    streams, stops and is recorded here. A detached run stays detached."""
    from ._ray import RayLauncher

    launcher = RayLauncher(ray_address, ray_options)
    launcher.check_job(spec.id)  # before anything is touched: the job is still on the cluster
    logs = LogFiles(log_dir)
    reg = registry()
    with reg.reserve(None if name in {r.name for r in reg.all() if not r.done} else name,
                     name) as chosen:
        logs.adopt()
        run = Run(spec, chosen, logs, supervisor(), restart=start, started_at=started_at)
        launch = LaunchSpec(run_id=spec.id, argv=spec.argv, cwd=spec.cwd, env={}, logs=logs,
                            cookie=spec.cookie, grace=spec.grace, started_at=started_at.timestamp())
        agent = launcher.adopt(launch, run.on_agent_event)
        reg.add(run, None)
    run.attach(agent)
    kernel_state().fire(NEW_RUN, run)  # the history row is this kernel's now
    return run


def launcher_for(backend: str = "local", ray_address: str | None = None,
                 ray_options: Mapping[str, Any] | None = None, start_timeout: float | None = None) -> Launcher:
    """The guarded local backend on Linux; the direct, degraded one elsewhere (macOS and
    Windows: the guard and warden read /proc), or when ``RUNSTOP_NB_NO_GUARD=1``; with
    ``backend="ray"``, Ray jobs (``_ray``, which alone imports Ray)."""
    if backend == "ray":
        from ._ray import RayLauncher

        return RayLauncher(ray_address, ray_options, start_timeout)
    if backend != "local":
        raise InvalidSpecError(f"backend must be local or ray, not {backend!r}")
    if ray_address is not None or ray_options:
        raise InvalidSpecError("ray_address and ray_options need backend='ray'")
    if hasattr(os, "fork") and procfs.HAVE_PROC and os.environ.get(NO_GUARD_VAR) != "1":
        from ._local import LocalLauncher

        return LocalLauncher()
    from ._direct import DirectLauncher

    return DirectLauncher()


def _default_name(spec: _spec.RunSpec) -> str:
    """A readable name from the command: ``python agents/review.py`` -> ``review``."""
    words = spec.argv[2].split() if spec.shell else list(spec.argv)
    word = words[0] if words else "agent"
    if os.path.basename(word).startswith("python") and len(words) > 1:
        if words[1] == "-m" and len(words) > 2:
            word = words[2]
        elif words[1].endswith(".py"):
            word = os.path.splitext(os.path.basename(words[1]))[0]
    base = os.path.basename(word) or "agent"
    clean = "".join(c if c.isalnum() or c in "._-" else "-" for c in base).strip("-._")
    return (clean or "agent")[:48]


def get(name_or_id: str) -> Run:
    """The run with this id, name (the live one, else the latest) or unique id prefix."""
    return registry().get(name_or_id)


def runs() -> list[Run]:
    """Every run of this kernel, live and ended, in start order."""
    return registry().all()


def stop_all(grace: float | None = None) -> list[StopResult]:
    """Stop every live run of this kernel, concurrently; one StopResult per live run."""
    live = [r for r in registry().all() if not r.done]
    if not live:
        return []
    with ThreadPoolExecutor(max_workers=min(32, len(live)), thread_name_prefix="runstop-stop") as pool:
        return list(pool.map(lambda r: r.stop(grace), live))
