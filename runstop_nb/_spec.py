"""Validation of ``start()``'s arguments into a complete, frozen run spec.

Every check runs before anything is spawned or registered, so a bad argument leaves no
process, no log folder and no registry entry behind.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ._launcher import Wanted, wanted_containment
from ._proc import procfs
from .errors import CommandNotFoundError, InvalidSpecError, StartError

DEFAULT_GRACE = 3.0
DEFAULT_IDLE = 120.0
FORMATS = ("auto", "claude", "codex", "gemini", "text")
RESERVED_ENV = (procfs.COOKIE_VAR, procfs.OWNER_VAR, procfs.RUN_ID_VAR, "RUNSTOP_NB_ROLE")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
NAME_RULE = "1-64 characters from letters, digits, '.', '_', '-', starting with a letter or digit"


@dataclass(frozen=True)
class RunSpec:
    argv: tuple[str, ...]
    cwd: str
    env_overrides: Mapping[str, str | None]
    name: str | None
    timeout: float | None
    grace: float
    shell: bool
    command: str | tuple[str, ...]  # what the user passed, for rerun
    containment: Wanted = "auto"
    stdin: bool = False  # keep a pipe to the agent's stdin (run.send)
    pty: bool = False  # run it in a pseudo-terminal (its output as a terminal shows it)
    format: str = "auto"  # the stdout event format: auto, claude, codex, gemini, text
    idle: float = DEFAULT_IDLE  # seconds without output before the run shows as idle
    max_cost: float | None = None  # USD: stop the run (cancelled, "budget exceeded") beyond this
    max_tokens: int | None = None  # input + output tokens, likewise
    worktree: bool = False  # run in a git worktree of its own
    parent: str | None = None  # the run this one resumes
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    cookie: str = field(default_factory=lambda: uuid.uuid4().hex)

    def agent_env(self) -> dict[str, str]:
        """The kernel's environment (its own Python first on PATH), plus overrides (None
        unsets), plus the run's markers."""
        env = base_env()
        for key, value in self.env_overrides.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        env[procfs.COOKIE_VAR] = self.cookie
        env[procfs.OWNER_VAR] = owner_marker()
        env[procfs.RUN_ID_VAR] = self.id
        return env


def owner_marker() -> str:
    """``<kernel pid>:<kernel start, epoch seconds>``: who owns a run, immune to pid reuse."""
    st = procfs.stat(os.getpid())
    if st is not None and procfs.HAVE_PROC:
        return f"{os.getpid()}:{procfs.start_epoch(st):.3f}"
    import psutil

    return f"{os.getpid()}:{psutil.Process().create_time():.3f}"


def kernel_path(path: str | None) -> str:
    """PATH with the kernel's own interpreter folder first, as activating its environment
    would: ``python`` in an agent is then the kernel's Python, with the same packages."""
    folder = os.path.dirname(sys.executable)
    parts = [p for p in (path or "").split(os.pathsep) if p]
    if parts[:1] == [folder] or not folder:
        return path or ""
    return os.pathsep.join([folder, *(p for p in parts if p != folder)])


def base_env() -> dict[str, str]:
    """What every agent starts from: the kernel's environment, adjusted for an agent."""
    env = dict(os.environ)
    if env.get("MPLBACKEND", "").startswith("module://matplotlib_inline"):
        del env["MPLBACKEND"]  # the kernel's inline backend would break a script's plots
    env.setdefault("PYTHONUNBUFFERED", "1")
    env["PATH"] = kernel_path(env.get("PATH"))
    for var in RESERVED_ENV:
        env.pop(var, None)  # a kernel that is itself a run must not pass its markers on
    return env


def check_seconds(what: str, value: object, *, allow_none: bool = True) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidSpecError(f"{what} must be a number of seconds, not {type(value).__name__}")
    if math.isnan(value) or math.isinf(value) or value <= 0:
        raise InvalidSpecError(f"{what} must be a positive, finite number of seconds; got {value!r}")
    return float(value)


def check_name(name: object) -> str | None:
    if name is None:
        return None
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidSpecError(f"invalid run name {name!r}: use {NAME_RULE}")
    return name


def _check_env(env: object) -> dict[str, str | None]:
    if env is None:
        return {}
    if not isinstance(env, Mapping):
        raise InvalidSpecError(f"env must be a mapping of str to str, not {type(env).__name__}")
    out: dict[str, str | None] = {}
    for key, value in env.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise InvalidSpecError(f"invalid env key {key!r}: a non-empty string without '=' or NUL")
        if value is not None and not isinstance(value, str):
            raise InvalidSpecError(
                f"env value for {key!r} must be a str (or None to unset), not {type(value).__name__}"
            )
        if value is not None and "\0" in value:
            raise InvalidSpecError(f"env value for {key!r} contains a NUL byte")
        if key in RESERVED_ENV:
            raise InvalidSpecError(f"{key} is set by runstop_nb for every run; leave it out of env")
        out[key] = value
    return out


def _argv(cmd: object, shell: bool, env: Mapping[str, str | None]) -> tuple[str, ...]:
    if shell:
        if not isinstance(cmd, str) or not cmd.strip():
            raise InvalidSpecError("with shell=True, cmd must be a non-empty string")
        if "\0" in cmd:
            raise InvalidSpecError("cmd contains a NUL byte")
        return (os.environ.get("SHELL") or "/bin/sh", "-c", cmd)
    if isinstance(cmd, str):
        raise InvalidSpecError(
            f"cmd is a string ({cmd!r}); pass a list of arguments, or shell=True to run it in a shell"
        )
    if not isinstance(cmd, Sequence) or not cmd:
        raise InvalidSpecError("empty command: pass a non-empty list such as ['python', 'agent.py']")
    if not all(isinstance(a, str) for a in cmd):
        raise InvalidSpecError("every argument in cmd must be a str")
    if not cmd[0] or any("\0" in a for a in cmd):
        raise InvalidSpecError("the command name is empty, or an argument contains a NUL byte")
    return tuple(cmd)


def _check_encodable(argv: tuple[str, ...], env: Mapping[str, str | None]) -> None:
    """Every string must become bytes for exec; a lone surrogate cannot."""
    items = [("argument", a) for a in argv] + [
        ("env", f"{k}={v}") for k, v in env.items() if v is not None] + [("env key", k) for k in env]
    for what, text in items:
        try:
            os.fsencode(text)
        except UnicodeEncodeError:
            raise InvalidSpecError(
                f"an {what} cannot be encoded for the OS ({text!r}); remove the lone surrogate"
            ) from None


def _resolve(argv0: str, cwd: str, path: str | None) -> None:
    """Fail early, with the command's name, if exec would fail."""
    if os.sep in argv0:
        target = argv0 if os.path.isabs(argv0) else os.path.join(cwd, argv0)
        if not os.path.exists(target):
            raise CommandNotFoundError(f"command not found: {argv0!r} does not exist")
        if os.path.isdir(target) or not os.access(target, os.X_OK):
            raise StartError(f"permission denied: {argv0!r} is not an executable file (chmod +x?)")
        return
    if shutil.which(argv0, path=path) is None:
        raise CommandNotFoundError(f"command not found: {argv0!r} is not on PATH")


def build(
    cmd: object,
    *,
    name: object = None,
    cwd: object = None,
    env: object = None,
    timeout: object = None,
    grace: object = None,
    shell: object = False,
    containment: object = None,
    stdin: object = False,
    pty: object = False,
    format: object = "auto",
    idle: object = None,
    max_cost: object = None,
    max_tokens: object = None,
    worktree: object = False,
    parent: str | None = None,
    here: bool = True,
) -> RunSpec:
    """Check every argument of ``start()``; raise a typed one-line error on the first bad one.

    ``here``: the command runs on this machine, so check that exec will find it (a Ray
    job's node has its own PATH; its guard reports a missing command instead)."""
    overrides = _check_env(env)
    argv = _argv(cmd, bool(shell), overrides)
    _check_encodable(argv, overrides)
    if cwd is None:
        cwd = os.getcwd()
    if not isinstance(cwd, (str, os.PathLike)):
        raise InvalidSpecError(f"cwd must be a path, not {type(cwd).__name__}")
    cwd = os.path.abspath(os.fspath(cwd))
    if not os.path.isdir(cwd):
        raise StartError(f"cwd {cwd!r} does not exist or is not a folder")
    if not os.access(cwd, os.X_OK):
        raise StartError(f"permission denied: cannot enter cwd {cwd!r}")
    path = overrides["PATH"] if "PATH" in overrides else kernel_path(os.environ.get("PATH"))
    if here:
        _resolve(argv[0], cwd, path)
    if containment is not None and not isinstance(containment, str):
        raise InvalidSpecError(f"containment must be 'auto', 'cgroup' or 'guard', not {type(containment).__name__}")
    command: str | tuple[str, ...] = cmd if isinstance(cmd, str) else tuple(argv)
    return RunSpec(
        argv=argv,
        cwd=cwd,
        env_overrides=overrides,
        name=check_name(name),
        timeout=check_seconds("timeout", timeout),
        grace=check_seconds("grace", grace) or DEFAULT_GRACE,
        shell=bool(shell),
        command=command,
        containment=wanted_containment(containment),
        stdin=_check_flag("stdin", stdin),
        pty=_check_flag("pty", pty),
        format=_check_format(format),
        idle=check_seconds("idle", idle) or DEFAULT_IDLE,
        max_cost=_check_limit("max_cost", max_cost, float),
        max_tokens=int(_check_limit("max_tokens", max_tokens, int) or 0) or None,
        worktree=_check_flag("worktree", worktree),
        parent=parent,
    )


def _check_flag(what: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidSpecError(f"{what} must be True or False, not {value!r}")
    return value


def _check_format(value: object) -> str:
    if value is None:
        return "auto"
    if not isinstance(value, str) or value not in FORMATS:
        raise InvalidSpecError(f"format must be one of {', '.join(FORMATS)}, not {value!r}")
    return value


def _check_limit(what: str, value: object, kind: type) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise InvalidSpecError(f"{what} must be a positive {'whole ' if kind is int else ''}number, not {value!r}")
    if math.isnan(value) or math.isinf(value) or value <= 0:
        raise InvalidSpecError(f"{what} must be a positive, finite number; got {value!r}")
    return float(value)
