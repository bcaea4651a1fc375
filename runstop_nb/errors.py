"""Every error runstop_nb raises, in one place.

Each derives from :class:`RunstopError` and from the builtin it resembles, so
callers can catch either::

    RunstopError
    ├── InvalidSpecError (ValueError)         bad arguments to start(); nothing was spawned
    ├── StartError (OSError)                  the agent could not be started
    │   └── CommandNotFoundError (FileNotFoundError)
    ├── NameInUseError (ValueError)           a live run already has that name
    ├── RunNotFoundError (LookupError)        no run with that name or id
    ├── TransitionError (RuntimeError)        an illegal lifecycle move (a bug, never user input)
    ├── HistoryError (RuntimeError)           the run history cannot be read
    ├── InputError (OSError)                  input cannot be sent to a run (ended, no stdin, not reading)
    └── WorktreeError (OSError)               a git worktree could not be made, read or removed

Messages say what happened and what to do next, on one line.
"""

from __future__ import annotations

__all__ = [
    "CommandNotFoundError",
    "HistoryError",
    "InputError",
    "InvalidSpecError",
    "NameInUseError",
    "RunNotFoundError",
    "RunstopError",
    "StartError",
    "TransitionError",
    "WorktreeError",
]


class RunstopError(Exception):
    """Base class of every runstop_nb error."""


class InvalidSpecError(RunstopError, ValueError):
    """An argument to ``start()`` is invalid; nothing was spawned."""


class StartError(RunstopError, OSError):
    """The agent could not be started; nothing is left running."""


class CommandNotFoundError(StartError, FileNotFoundError):
    """The command is not on PATH or does not exist."""


class NameInUseError(RunstopError, ValueError):
    """A live run already carries the requested name."""


class RunNotFoundError(RunstopError, LookupError):
    """No run matches the given name or id."""


class TransitionError(RunstopError, RuntimeError):
    """A run was asked to make a lifecycle move its table forbids."""


class HistoryError(RunstopError, RuntimeError):
    """The run history could not be read."""


class InputError(RunstopError, OSError):
    """Input could not be sent to a run: it has ended, has no stdin, or is not reading it."""


class WorktreeError(RunstopError, OSError):
    """A git worktree for a run could not be made, read or removed."""
