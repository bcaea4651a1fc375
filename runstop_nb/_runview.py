"""What a view of a run may read and do: the one protocol the widget, the grid and the
tables are typed against. ``Run`` (live, this kernel) and ``PastRun`` (from the history,
read-only) both satisfy it; a past run's actions raise or do nothing, and ``live`` says
which one a view holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ._agents import AgentSummary, Card
    from ._logs import TailBuffer
    from ._results import StopResult
    from ._worktree import FileChange, Worktree


@runtime_checkable
class RunView(Protocol):
    # identity and command
    id: str
    name: str
    argv: list[str]
    cwd: str
    pid: int | None
    log_dir: Path
    started_at: datetime
    ended_at: datetime | None
    grace: float
    timeout: float | None

    @property
    def live(self) -> bool:
        """True for a run of this kernel (it can be stopped, sent input, resumed...)."""
        ...

    @property
    def status(self) -> str: ...
    @property
    def done(self) -> bool: ...
    @property
    def stop_in_progress(self) -> bool: ...
    @property
    def elapsed(self) -> float: ...
    @property
    def lines(self) -> int: ...
    @property
    def bytes(self) -> int: ...

    returncode: int | None
    error: str | None
    last_stop: StopResult | None
    containment: str
    buffer: TailBuffer  # the cleaned tail, tagged by stream, in the order written

    def command_text(self) -> str:
        """The command as a person would type it."""
        ...

    # agent-aware runs (None / empty for a plain run)
    @property
    def format(self) -> str:
        """``claude``, ``codex``, ``gemini``, ``text``, or ``auto`` while undecided."""
        ...

    @property
    def agent(self) -> AgentSummary | None: ...

    def cards(self, n: int | None = None) -> Sequence[Card]:
        """The newest ``n`` cards of an agent's stream, oldest first (empty for text)."""
        ...

    def card_text(self, card_id: str) -> str | None:
        """The whole body (and detail) of a card, for "show all"; None once evicted."""
        ...

    @property
    def idle_for(self) -> float | None:
        """Seconds since the agent last wrote anything (None once ended)."""
        ...

    @property
    def waiting(self) -> str | None:
        """Why the agent waits for the user (a permission denial, an input request), or None."""
        ...

    # input (runs started with stdin=True)
    @property
    def stdin_open(self) -> bool: ...

    # worktree (runs started with worktree=True)
    @property
    def worktree(self) -> Worktree | None: ...

    def diffstat(self) -> list[FileChange]: ...
    def diff(self) -> str: ...

    # actions
    def stop(self, grace: float | None = None) -> StopResult: ...
    def rerun(self) -> Any: ...
    def resume(self, prompt: str) -> Any: ...
    def send(self, text: str) -> None: ...
    def interrupt(self) -> None: ...
    def add_listener(self, fn: Callable[[Any], None]) -> Callable[[], None]: ...
    def member_pids(self) -> list[int]: ...
