"""Background loops that survive ``%autoreload``.

IPython's autoreload (superreload) empties a module's namespace while it re-runs it. A
loop that looks up a module global in that window gets a NameError, and so does an
``except`` clause that logs through a module-level ``log``: the thread dies, and with it
every run's tailing, timeouts and stops. So each loop is one ``step()`` call repeated by
``forever()``, which keeps everything it needs in closure cells, which no reload touches.
A step that fails is logged and retried; the thread never ends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable


def forever(step: Callable[[], None], name: str, pause: float = 0.1) -> threading.Thread:
    """Start a daemon thread that calls ``step()`` forever; errors are logged and retried."""
    sleep, logger, error = time.sleep, logging.getLogger("runstop_nb"), Exception

    def target() -> None:
        while True:
            try:
                step()
            except error:
                logger.exception("runstop_nb: %s hit an error; it carries on", name)
                sleep(pause)

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread
