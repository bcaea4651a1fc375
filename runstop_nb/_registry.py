"""The kernel-wide registry of runs, kept where module reloads cannot reach it.

``%autoreload`` empties a module's namespace before reloading it, and ``importlib.reload``
re-runs it, so a registry in a module global would be lost or duplicated. The registry
and the supervisor therefore live on a plain module object stored in ``sys.modules``
under a name that no file backs (``_runstop_nb_kernel_state``): reloaders skip it, and
every version of runstop_nb's code finds the same one. A forked child (its pid differs)
gets a fresh one, since threads do not survive fork.
"""

from __future__ import annotations

import os
import sys
import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .errors import NameInUseError, RunNotFoundError

if TYPE_CHECKING:
    from ._run import Run
    from ._supervisor import Supervisor

_STATE = "_runstop_nb_kernel_state"
_create_lock = threading.Lock()


def kernel_state() -> Any:
    """The per-process state object: ``registry``, ``supervisor``, ``lock``."""
    state = sys.modules.get(_STATE)
    if state is not None and getattr(state, "pid", None) == os.getpid():
        return state
    with _create_lock:
        state = sys.modules.get(_STATE)
        if state is None or getattr(state, "pid", None) != os.getpid():
            state = types.ModuleType(_STATE, "runstop_nb's per-kernel state (not a real module)")
            state.pid = os.getpid()  # type: ignore[attr-defined]
            state.lock = threading.RLock()  # type: ignore[attr-defined]
            state.registry = Registry()  # type: ignore[attr-defined]
            state.supervisor = None  # type: ignore[attr-defined]
            sys.modules[_STATE] = state
    return state


def registry() -> Registry:
    reg: Registry = kernel_state().registry
    return reg


def supervisor() -> Supervisor:
    from ._supervisor import Supervisor

    state = kernel_state()
    with state.lock:
        if state.supervisor is None or not state.supervisor.alive:
            state.supervisor = Supervisor()
        sup: Supervisor = state.supervisor
        return sup


class Registry:
    """All runs of this kernel, live and ended, in start order. Thread-safe.

    Names are unique among live runs; an ended run's name can be reused.
    ``keys`` maps a caller's key (the notebook cell and position) to a run id.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._runs: dict[str, Run] = {}
        self._reserved: set[str] = set()
        self.keys: dict[str, str] = {}

    def _live_names(self) -> set[str]:
        return {r.name for r in self._runs.values() if not r.done} | self._reserved

    @contextmanager
    def reserve(self, name: str | None, default: str) -> Iterator[str]:
        """Hold a live name while a run starts; an explicit name in use raises NameInUseError."""
        with self._lock:
            taken = self._live_names()
            if name is not None:
                if name in taken:
                    raise NameInUseError(
                        f"a live run is already named {name!r}; stop it first, or pick another name"
                    )
                chosen = name
            else:
                chosen, n = default, 2
                while chosen in taken:
                    chosen, n = f"{default}-{n}", n + 1
            self._reserved.add(chosen)
        try:
            yield chosen
        finally:
            with self._lock:
                self._reserved.discard(chosen)

    def add(self, run: Run, key: str | None = None) -> None:
        with self._lock:
            self._runs[run.id] = run
            if key is not None:
                self.keys[key] = run.id

    def all(self) -> list[Run]:
        with self._lock:
            return list(self._runs.values())

    def by_key(self, key: str) -> Run | None:
        with self._lock:
            run_id = self.keys.get(key)
            return self._runs.get(run_id) if run_id else None

    def get(self, name_or_id: str) -> Run:
        """A run by exact id, by name (the live one, else the latest), or by unique id prefix."""
        if not isinstance(name_or_id, str) or not name_or_id:
            raise RunNotFoundError(f"no run named {name_or_id!r}; runstop_nb.runs() lists runs")
        with self._lock:
            if name_or_id in self._runs:
                return self._runs[name_or_id]
            named = [r for r in self._runs.values() if r.name == name_or_id]
            if named:
                live = [r for r in named if not r.done]
                return (live or named)[-1]
            prefixed = [r for r in self._runs.values() if r.id.startswith(name_or_id)]
            if len(prefixed) == 1 and len(name_or_id) >= 4:
                return prefixed[0]
        raise RunNotFoundError(
            f"no run named {name_or_id!r} in this kernel; runstop_nb.runs() or %agent_ls lists runs"
        )
