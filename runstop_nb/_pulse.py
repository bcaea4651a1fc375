"""The kernel's pulse: one small model that beats every 1.5 seconds, for every view.

A run view cannot always tell that its kernel is gone (docs/platform.md): a restart from
the Kernel menu reaches anywidget views only as ``comm_live_update``, and a restart
through the REST API reaches them not at all. So one model per kernel beats every
``BEAT`` seconds (one message per beat for the whole kernel, however many views) and
every view watches it: no beat for ``GONE_AFTER`` seconds means the kernel is gone. The
beat also carries the kernel's wall clock, so views tick their clocks in the browser
without drifting from the kernel's (a remote kernel's clock may differ).

The model is a bare ``WidgetModel`` of ``@jupyter-widgets/base``: no view and no layout,
so it costs one comm model per kernel.
"""

from __future__ import annotations

import threading
import time

import ipywidgets as w
import traitlets as t

from ._kernelstate import kernel_state
from ._renderer import ui_lock
from ._threads import forever

BEAT = 1.5  # seconds between beats
GONE_AFTER = 4.0  # seconds of silence after which views say the kernel is gone (checked in the JS)


class Pulse(w.Widget):  # type: ignore[misc]
    """``beat`` is [count, kernel time in epoch ms]; it changes every ``BEAT`` seconds."""

    _model_name = t.Unicode("WidgetModel").tag(sync=True)
    _model_module = t.Unicode("@jupyter-widgets/base").tag(sync=True)
    _model_module_version = t.Unicode(w.__jupyter_widgets_base_version__).tag(sync=True)
    beat = t.List([0, 0]).tag(sync=True)

    def __init__(self) -> None:
        super().__init__(beat=[0, int(time.time() * 1000)])
        self._stopped = threading.Event()
        self._count = 0
        self._thread = forever(self._step, "runstop-pulse")

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and self.comm is not None and not self._stopped.is_set()

    def _step(self) -> None:
        if self._stopped.wait(BEAT):
            time.sleep(3600)  # closed: this thread idles for good (daemon)
            return
        self._count += 1
        with ui_lock():
            if self.comm is not None:
                self.beat = [self._count, int(time.time() * 1000)]

    def close(self) -> None:
        self._stopped.set()
        super().close()


def pulse() -> Pulse:
    """This kernel's pulse model (made on first use, again if it was closed)."""
    return kernel_state().service("pulse", Pulse, lambda p: p.alive)
