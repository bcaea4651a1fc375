"""A stand-in RunView for view tests: every member of the protocol, set by hand, no process.

Views are typed against ``runstop_nb._runview.RunView``; this lets their Python side be
tested for agent cards, stdin, worktrees and stop details without a real agent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from runstop_nb._agents import AgentSummary, Card, Usage
from runstop_nb._logs import TailBuffer
from runstop_nb._results import StopResult
from runstop_nb._worktree import FileChange, Worktree


@dataclass
class FakeRun:
    id: str = "f00dfeed01"
    name: str = "fake"
    argv: list[str] = field(default_factory=lambda: ["claude", "-p", "fix the tests"])
    cwd: str = "/tmp/project"
    pid: int | None = 4242
    log_dir: Path = Path("/tmp/project/.runstop/runs/f00dfeed01")
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc) - timedelta(seconds=75))
    ended_at: datetime | None = None
    grace: float = 1.0
    timeout: float | None = None
    status: str = "running"
    done: bool = False
    stop_in_progress: bool = False
    elapsed: float = 75.0
    lines: int = 1
    bytes: int = 417
    returncode: int | None = None
    error: str | None = None
    last_stop: StopResult | None = None
    containment: str = "guard"
    buffer: TailBuffer = field(default_factory=TailBuffer)
    live: bool = True
    format: str = "claude"
    agent: AgentSummary | None = None
    card_list: list[Card] = field(default_factory=list)
    full_texts: dict[str, str] = field(default_factory=dict)
    idle_for: float | None = 5.0
    idle_after: float = 120.0
    waiting: str | None = None
    stdin_open: bool = False
    worktree: Worktree | None = None
    ray_job: dict[str, str] | None = None
    changes: list[FileChange] = field(default_factory=list)
    diff_text: str = ""
    sent: list[str] = field(default_factory=list)
    send_error: Exception | None = None
    interrupts: int = 0
    listeners: list[Callable[[Any], None]] = field(default_factory=list)

    def command_text(self) -> str:
        return " ".join(self.argv)

    def cards(self, n: int | None = None) -> Sequence[Card]:
        return self.card_list if n is None else self.card_list[-n:]

    def card_text(self, card_id: str) -> str | None:
        return self.full_texts.get(card_id)

    def diffstat(self) -> list[FileChange]:
        return list(self.changes)

    def diff(self) -> str:
        return self.diff_text

    def stop(self, grace: float | None = None) -> StopResult:
        raise NotImplementedError

    def rerun(self) -> Any:
        raise NotImplementedError

    def resume(self, prompt: str) -> Any:
        raise NotImplementedError

    def send(self, text: str) -> None:
        if self.send_error is not None:
            raise self.send_error
        self.sent.append(text)

    def interrupt(self) -> None:
        self.interrupts += 1

    def add_listener(self, fn: Callable[[Any], None]) -> Callable[[], None]:
        self.listeners.append(fn)
        return lambda: self.listeners.remove(fn) if fn in self.listeners else None

    def member_pids(self) -> list[int]:
        return []


def card(i: int, kind: str = "text", body: str = "", full: int | None = None, status: str = "ok",
         detail: str = "") -> Card:
    return Card(id=f"c{i}", kind=kind, title=f"title {i}", summary=f"summary {i}", body=body,  # type: ignore[arg-type]
                full_chars=len(body) if full is None else full, status=status, detail=detail)  # type: ignore[arg-type]


def summary(cost: float | None = 0.0421, session: str | None = "sess-1") -> AgentSummary:
    return AgentSummary(kind="claude", session_id=session, model="claude-sonnet", turns=3, tool_calls=5,
                        usage=Usage(12_300, 1_200, 9_000, cost), result="done", is_error=False, waiting=None)
