"""The kernel-wide registry of runs, kept where module reloads cannot reach it.

It lives in the kernel state (``_kernelstate``), so ``%autoreload`` and
``importlib.reload`` of runstop_nb's modules never lose or duplicate a run, and a forked
child starts with an empty one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ._kernelstate import kernel_state
from .errors import NameInUseError, RunNotFoundError

if TYPE_CHECKING:
    from ._run import Run


MIN_PREFIX = 4  # characters of an id prefix that may name a run


def registry() -> Registry:
    """This kernel's registry."""
    return kernel_state().service("registry", Registry)


class Registry:
    """All runs of this kernel, live and ended, in start order. Thread-safe.

    Names are unique among live runs; an ended run's name can be reused.
    A key (the notebook cell and position of an unnamed agent) maps to the run started
    there, so re-running the cell finds it.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._runs: dict[str, Run] = {}
        self._reserved: set[str] = set()
        self._keys: dict[str, str] = {}

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
                self._keys[key] = run.id

    def bind_key(self, key: str, run: Run) -> None:
        """From now on, ``by_key(key)`` finds ``run``."""
        with self._lock:
            self._keys[key] = run.id

    def all(self) -> list[Run]:
        with self._lock:
            return list(self._runs.values())

    def by_key(self, key: str) -> Run | None:
        with self._lock:
            run_id = self._keys.get(key)
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
            if len(prefixed) == 1 and len(name_or_id) >= MIN_PREFIX:
                return prefixed[0]
        raise RunNotFoundError(
            f"no run named {name_or_id!r} in this kernel; runstop_nb.runs() or %agent_ls lists runs"
        )
