"""The module-level API: start, get, runs, stop_all."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from . import _recorder, _spec
from ._home import run_dir
from ._launcher import LaunchSpec, launcher_for
from ._logs import LogFiles
from ._registry import registry, supervisor
from ._results import StopResult
from ._run import Run


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
) -> Run:
    """Start an agent; return its Run once the agent process is running.

    ``cmd`` is a list of arguments, or with ``shell=True`` a string for ``$SHELL -c``.
    ``env`` adds to (a None value removes from) the kernel's environment. ``timeout`` stops
    the run after that many seconds (it ends ``timed_out``); ``grace`` is how long a stop
    waits between SIGTERM and SIGKILL (default 3 s). Raises InvalidSpecError, StartError
    (CommandNotFoundError) or NameInUseError, leaving nothing behind.
    """
    spec = _spec.build(cmd, name=name, cwd=cwd, env=env, timeout=timeout, grace=grace, shell=shell)
    reg = registry()
    default = _default_name(spec)
    with reg.reserve(spec.name, default) as chosen:
        logs = LogFiles(run_dir(spec.id)).create()
        sup = supervisor()
        run = Run(spec, chosen, logs, sup, key=key)
        launch = LaunchSpec(
            argv=spec.argv,
            cwd=spec.cwd,
            env=spec.agent_env(),
            logs=logs,
            cookie=spec.cookie,
            grace=spec.grace,
            started_at=run.started_at.timestamp(),
        )
        try:
            agent = launcher_for(sup).launch(launch, run._on_agent_event)
        except BaseException:
            shutil.rmtree(logs.dir, ignore_errors=True)  # nothing ran; leave no trace
            raise
        reg.add(run, key)
    run._attach(agent)
    _recorder.track(run)  # after _attach, so the first row has the pid; never raises
    return run


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
    with ThreadPoolExecutor(max_workers=min(16, len(live)), thread_name_prefix="runstop-stop") as pool:
        return list(pool.map(lambda r: r.stop(grace), live))
