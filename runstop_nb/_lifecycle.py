"""The run lifecycle: states, events, and the table of legal moves.

Rules this table encodes:

* A run is registered only once its agent has started, so it begins ``running``.
* ``stopping`` lasts until the whole tree is verified dead; only then does the run
  become ``cancelled`` (or ``timed_out``). A stop that could not kill everything
  leaves the run ``stopping``, and a retry is a legal self-move.
* A natural exit ends as ``completed`` (exit 0) or ``failed``, once leftovers are dead.
* A run that was asked to stop never ends ``failed``, even if its root exits non-zero.
* A run whose guard died (or, on Ray, whose cluster stopped answering) was stopped by
  nobody: it ends ``failed``, with the reason, once its tree is dead or known unknowable.
* Terminal states have no way out.

No I/O happens here, so the table is tested without processes.
"""

from __future__ import annotations

from enum import Enum

from ._status import TERMINAL as _TERMINAL_NAMES
from ._status import RunStatus as RunStatus  # re-exported: the lifecycle speaks in these
from .errors import TransitionError


class Event(str, Enum):
    STOP = "stop"  # a user, stop_all, a budget or cleanup asked the run to stop
    TIMEOUT = "timeout"  # the run's timeout elapsed
    RETRY_STOP = "retry_stop"  # a stop is attempted again after one left survivors
    EXITED_OK = "exited_ok"  # root exited 0 and the tree is dead
    EXITED_ERROR = "exited_error"  # root exited non-zero and the tree is dead
    STOPPED = "stopped"  # the tree is dead after a user/cleanup stop
    TIMED_OUT = "timed_out"  # the tree is dead after a timeout stop
    LOST = "lost"  # the run's guard (or its Ray cluster) was lost; its tree was ended without it


TERMINAL = frozenset(RunStatus(name) for name in _TERMINAL_NAMES)

_S, _E = RunStatus, Event
TRANSITIONS: dict[tuple[RunStatus, Event], RunStatus] = {
    (_S.RUNNING, _E.STOP): _S.STOPPING,
    (_S.RUNNING, _E.TIMEOUT): _S.STOPPING,
    (_S.RUNNING, _E.EXITED_OK): _S.COMPLETED,
    (_S.RUNNING, _E.EXITED_ERROR): _S.FAILED,
    (_S.STOPPING, _E.RETRY_STOP): _S.STOPPING,
    (_S.STOPPING, _E.STOPPED): _S.CANCELLED,
    (_S.STOPPING, _E.TIMED_OUT): _S.TIMED_OUT,
    (_S.STOPPING, _E.LOST): _S.FAILED,
}


def next_status(current: RunStatus, event: Event) -> RunStatus:
    """Return the state that ``event`` moves ``current`` to, or raise TransitionError."""
    # After importlib.reload a live run may hold members of the previous enum classes:
    # normalize by value, so the table works across reloads (never compare with ``is``).
    current, event = RunStatus(current.value), Event(event.value)
    try:
        return TRANSITIONS[(current, event)]
    except KeyError:
        legal = sorted(e.value for (s, e) in TRANSITIONS if s is current)
        raise TransitionError(
            f"a {current.value} run cannot take event {event.value!r}; "
            f"legal events: {', '.join(legal) or 'none (terminal)'}"
        ) from None
