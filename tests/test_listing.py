"""The compact table of runs: sorted by start, the command shown, short paths, words for sizes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from runstop_nb._listing import RunTable, row
from runstop_nb._results import StopResult

from .fakerun import FakeRun

T0 = datetime(2026, 11, 21, 20, 0, tzinfo=timezone.utc)


def runs() -> list[FakeRun]:
    stop = StopResult(run_id="b", name="stubborn", stopped=True, reason="stopped", prior_status="running",
                      status="cancelled", escalated=True, signalled=2, elapsed_s=1.02, verified_by="subreaper")
    return [
        FakeRun(id="bbbbbbbbbb", name="stubborn", argv=["python", "agents/stubborn.py"], started_at=T0 + timedelta(seconds=5),
                status="cancelled", done=True, returncode=-9, last_stop=stop, lines=3, elapsed=1.5,
                cwd="/home/me/project", log_dir=Path("/home/me/project/.runstop/runs/bbbbbbbbbb")),
        FakeRun(id="aaaaaaaaaa", name="reviewer", argv=["sh", "-c", "echo hi; sleep 1"], started_at=T0,
                status="completed", done=True, returncode=0, lines=1, elapsed=1.0,
                cwd="/home/me/project", log_dir=Path("/home/me/project/.runstop/runs/aaaaaaaaaa")),
    ]


def test_the_text_table_is_sorted_by_start_with_commands_and_short_paths() -> None:
    text = str(RunTable(runs()))
    lines = text.splitlines()
    assert lines[0].split() == ["name", "status", "elapsed", "lines", "exit", "command", "log"]
    assert lines[1].startswith("reviewer") and lines[2].startswith("stubborn"), "oldest first"
    assert "echo hi; sleep 1" in lines[1], "a shell run shows its command text"
    assert ".runstop/runs/aaaaaaaaaa" in lines[1] and "/home/me" not in text, "paths are said short"
    assert "exit 0" in lines[1] and "stopped (SIGKILL)" in lines[2]


def test_rows_carry_what_the_live_table_needs() -> None:
    r = row(runs()[0])
    assert (r["name"], r["status"], r["done"], r["lines"], r["exit"]) == ("stubborn", "cancelled", True, 3,
                                                                        "stopped (SIGKILL)")
    assert r["started"] == int((T0 + timedelta(seconds=5)).timestamp() * 1000) and r["elapsed"] == 1.5


def test_outside_a_kernel_a_table_is_text_and_html() -> None:
    bundle = RunTable(runs())._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"}
    assert "<table class='runstop-table'>" in bundle["text/html"] and "stubborn" in bundle["text/plain"]
    assert str(RunTable([])) == "no runs in this kernel"
