"""Kernel-wide state: one typed object per process, kept where module reloads cannot reach it.

``%autoreload`` empties a module's namespace before reloading it, and ``importlib.reload``
re-runs it, so state in a module global would be lost or duplicated. This object lives on
a plain module object stored in ``sys.modules`` under a name no file backs
(``_runstop_nb_kernel_state``): reloaders skip it, and every version of runstop_nb's code
finds the same one. A forked child (its pid differs) gets a fresh one, since threads do
not survive fork.

Each layer keeps its own long-lived services here (the supervisor, the recorder, the
renderer...) through ``service()``, and the upper layers hook into the core by *name*
(``hook()``), so a reloaded module's new functions are the ones called.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
import types
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
_MODULE = "_runstop_nb_kernel_state"
_create_lock = threading.Lock()
log = logging.getLogger("runstop_nb")


class KernelState:
    """This process's runstop_nb state: services by name, and hooks by name."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.RLock()
        self._services: dict[str, Any] = {}
        self._hooks: dict[str, list[str]] = {}

    def service(self, name: str, factory: Callable[[], T], alive: Callable[[T], bool] = lambda _: True) -> T:
        """The service called ``name``, made by ``factory()`` on first use (or once it died)."""
        with self.lock:
            current = self._services.get(name)
            if current is None or not alive(current):
                current = factory()
                self._services[name] = current
            result: T = current
            return result

    def peek(self, name: str) -> Any:
        """The service called ``name`` if it exists, else None (never creates it)."""
        return self._services.get(name)

    def hook(self, event: str, target: str) -> None:
        """Call ``target`` ("package.module:function") on ``event``; idempotent."""
        with self.lock:
            targets = self._hooks.setdefault(event, [])
            if target not in targets:
                targets.append(target)

    def fire(self, event: str, *args: Any) -> list[Any]:
        """Call every hook of ``event``; a hook that raises is logged, never propagated."""
        with self.lock:
            targets = list(self._hooks.get(event, ()))
        results = []
        for target in targets:
            module, _, attr = target.partition(":")
            try:
                fn = getattr(sys.modules.get(module) or importlib.import_module(module), attr)
                results.append(fn(*args))
            except Exception:
                log.exception("runstop_nb: the %s hook %s raised; ignored", event, target)
        return results

    def has_hook(self, event: str) -> bool:
        return bool(self._hooks.get(event))


def kernel_state() -> KernelState:
    """This process's state object (created on first use, fresh after a fork)."""
    holder = sys.modules.get(_MODULE)
    state = getattr(holder, "state", None)
    if state is not None and state.pid == os.getpid():
        return state  # type: ignore[no-any-return]
    with _create_lock:
        holder = sys.modules.get(_MODULE)
        state = getattr(holder, "state", None)
        if state is None or state.pid != os.getpid():
            holder = types.ModuleType(_MODULE, "runstop_nb's per-kernel state (not a real module)")
            state = KernelState()
            holder.state = state  # type: ignore[attr-defined]
            sys.modules[_MODULE] = holder
        return state
