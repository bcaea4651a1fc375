"""The run history: rows written at start and on every change, kept private, shared by
kernels, surviving restarts, corruption and unusable files; past runs read like runs."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

import runstop_nb
from runstop_nb import PastRun, _home, _recorder
from runstop_nb._history import Store
from runstop_nb._home import runs_home
from runstop_nb.errors import InvalidSpecError, RunNotFoundError

from .helpers import AGENTS, PY, cookie_alive, helpers_of, kill_pids, wait_for
from .kernel import Kernel, kernel
from .orphans import other_process_run

COUNTER = str(AGENTS / "counter.py")


def rows(home: Path) -> dict[str, sqlite3.Row]:
    """The history as another process would read it: a separate connection, no runstop code."""
    conn = sqlite3.connect(home / "history.sqlite")
    conn.row_factory = sqlite3.Row
    try:
        return {r["id"]: r for r in conn.execute("SELECT * FROM runs")}
    finally:
        conn.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- rows and privacy ----------------------------------------------------------------------


def test_runs_home_logs_and_database_are_private(runs_home: Path) -> None:
    run = runstop_nb.start([PY, "-c", "print('hello')"], name="private")
    run.wait(30)
    assert mode(runs_home) == 0o700
    assert "*" in (runs_home / ".gitignore").read_text().splitlines()
    assert mode(runs_home / "runs") == 0o700
    assert mode(run.log_dir) == 0o700
    for name in ("stdout.log", "stderr.log", "order.idx", "guard.log"):
        assert mode(run.log_dir / name) == 0o600, name
    db = runs_home / "history.sqlite"
    assert mode(db) == 0o600
    wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
    assert wal.exists() and shm.exists(), "WAL mode keeps these while this process has the database open"
    assert mode(wal) == 0o600 and mode(shm) == 0o600


def test_row_is_written_at_start_and_on_each_change(runs_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INHERITED_SECRET", "inherited-value-7f3a")
    run = runstop_nb.start(["sleep", "1000"], name="rowed", env={"API_TOKEN": "token-value-91c2", "DROPPED": None})
    row = rows(runs_home)[run.id]  # no flush: start() returned, so the row is on disk
    assert row["status"] == "running" and row["pid"] == run.pid and row["name"] == "rowed"
    assert row["kernel_pid"] == os.getpid() and row["cookie"] == run.spec.cookie
    assert json.loads(row["argv"]) == ["sleep", "1000"] and row["cwd"] == os.getcwd()
    assert json.loads(row["env_keys"]) == ["API_TOKEN"] and json.loads(row["env_unset"]) == ["DROPPED"]
    assert row["ended_at"] is None and row["log_dir"] == str(run.log_dir)
    result = run.stop(grace=1)
    row = rows(runs_home)[run.id]  # the end is on disk once stop() returns
    assert row["status"] == "cancelled" and row["returncode"] == run.returncode
    assert row["ended_at"] == pytest.approx(run.ended_at.timestamp())  # type: ignore[union-attr]
    assert row["stop_reason"] == "stopped" and row["stop_signalled"] == result.signalled
    # Values never reach the database: neither the overrides' nor the inherited environment's.
    blob = b"".join(p.read_bytes() for p in runs_home.glob("history.sqlite*") if p.is_file())
    assert b"token-value-91c2" not in blob and b"inherited-value-7f3a" not in blob
    assert b"API_TOKEN" in blob


def test_a_natural_end_records_status_returncode_and_counts(runs_home: Path) -> None:
    run = runstop_nb.start([PY, "-c", "import sys; print('a\\nb\\nc'); sys.exit(3)"], name="fails")
    assert run.wait(30) == "failed"
    _recorder.flush()  # wait() returns a moment before the run's listeners hear of its end
    row = rows(runs_home)[run.id]
    assert (row["status"], row["returncode"], row["lines"], row["bytes"]) == ("failed", 3, 3, 6)


# -- the API -------------------------------------------------------------------------------


def test_history_filters_and_is_a_plain_list_of_records() -> None:
    ok = runstop_nb.start([PY, "-c", "print(1)"], name="alpha")
    bad = runstop_nb.start([PY, "-c", "raise SystemExit(2)"], name="beta")
    live = runstop_nb.start(["sleep", "1000"], name="alpha-live")
    ok.wait(30), bad.wait(30)
    records = runstop_nb.history()
    assert isinstance(records, list)
    assert [r.id for r in records] == [live.id, bad.id, ok.id], "newest first"
    assert [r.id for r in runstop_nb.history(name="alpha")] == [ok.id]
    assert [r.id for r in runstop_nb.history(status="failed")] == [bad.id]
    assert [r.id for r in runstop_nb.history(status=["running", "completed"])] == [live.id, ok.id]
    assert [r.id for r in runstop_nb.history(limit=1)] == [live.id]
    assert records[1].returncode == 2 and records[1].status == "failed"
    as_dicts = [dataclasses.asdict(r) for r in records]  # what pandas.DataFrame(records) does
    assert as_dicts[0]["status"] == "running" and as_dicts[0]["pid"] == live.pid
    assert "alpha-live" in repr(records) and "STATUS" in repr(records)
    with pytest.raises(ValueError, match="unknown status"):
        runstop_nb.history(status="finished")


def test_history_becomes_a_dataframe_when_pandas_is_installed() -> None:
    pd = pytest.importorskip("pandas")
    run = runstop_nb.start([PY, "-c", "print(1)"], name="framed")
    run.wait(30)
    frame = pd.DataFrame(runstop_nb.history())
    assert list(frame["id"]) == [run.id] and list(frame["status"]) == ["completed"]


def test_history_shows_as_an_html_table_in_a_notebook_and_text_in_a_terminal() -> None:
    tricky = runstop_nb.start([PY, "-c", "print('<b>&')", "<script>alert(1)</script>"], name="html-ish")
    failed = runstop_nb.start([PY, "-c", "raise SystemExit(3)"], name="html-failed")
    tricky.wait(30), failed.wait(30)
    records = runstop_nb.history()
    html = records._repr_html_()
    assert html.startswith("<table") and html.count("<tr>") == 3, "a header and one row per run"
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html, "values are escaped"
    assert "&lt;b&gt;&amp;" in html
    for run in (tricky, failed):
        badge = f"<span class='runstop-badge' data-status='{run.status}'>{run.status}</span>"
        assert badge in html and f"<code>{run.id}</code>" in html
    text = repr(records)
    assert "<" not in text.splitlines()[0] and text.splitlines()[0].split()[:3] == ["ID", "NAME", "STATUS"]
    assert [line.split()[0] for line in text.splitlines()[1:]] == [failed.id, tricky.id]
    assert runstop_nb.history(name="nobody")._repr_html_() == "<i>no runs recorded</i>"
    if importlib.util.find_spec("pandas") is not None:  # without pandas, the dataframe test above skips
        import pandas as pd  # type: ignore[import-untyped,unused-ignore]

        assert list(pd.DataFrame(records)["id"]) == [failed.id, tricky.id]


def test_past_run_reads_like_the_run_it_records() -> None:
    run = runstop_nb.start([PY, COUNTER, "--lines", "12", "--interval", "0.01", "--progress-every", "5"],
                           name="reader")
    run.wait(30)
    stopped = runstop_nb.start(["sleep", "1000"], name="stopped")
    stopped.stop(grace=1)
    past = runstop_nb.load(run.id)
    assert (past.id, past.name, past.argv, past.cwd, past.pid) == (run.id, run.name, run.argv, run.cwd, run.pid)
    assert (past.status, past.returncode, past.done) == ("completed", 0, True)
    ms = timedelta(milliseconds=1)
    assert past.started_at == pytest.approx(run.started_at, abs=ms)
    assert past.ended_at == pytest.approx(run.ended_at, abs=ms)
    assert (past.lines, past.bytes, past.log_dir) == (run.lines, run.bytes, run.log_dir)
    assert past.output() == run.output() and past.tail(3) == run.tail(3)
    assert past.output("stderr") == run.output("stderr") and "checkpoint 5" in past.output("stderr")
    assert past.elapsed == pytest.approx(run.elapsed, abs=0.05)
    assert [text for _, text in past.buffer.lines()][-2:] == [text for _, text in run.buffer.lines()][-2:]
    assert runstop_nb.load(stopped.id).last_stop == stopped.last_stop
    assert runstop_nb.load("reader").id == run.id, "by name"
    assert runstop_nb.load(run.id[:6]).id == run.id, "by unique prefix"
    with pytest.raises(RunNotFoundError, match="history"):
        runstop_nb.load("no-such-run")


def test_past_run_rerun_starts_the_same_command_again() -> None:
    run = runstop_nb.start(["sh", "-c", 'echo "v=$VALUE"'], name="again", env={"VALUE": "one"})
    run.wait(30)
    new = runstop_nb.load(run.id).rerun()  # a run of this kernel: its own values are reused
    assert new.id != run.id and new.name == "again"
    assert new.wait(30) == "completed" and new.output() == "v=one\n"
    assert runstop_nb.load(new.id).status == "completed"


def test_rerun_of_another_kernels_run_asks_for_env_values_it_never_stored() -> None:
    with other_process_run(["sh", "-c", 'echo "v=$VALUE"'], name="theirs", env={"VALUE": "secret"},
                           wait=True) as owner:
        past = runstop_nb.load(owner.id)
        assert isinstance(past, PastRun), "a local run of another kernel is a past run"
        assert past.status == "completed" and past.output() == "v=secret\n"
        with pytest.raises(InvalidSpecError, match="VALUE"):
            past.rerun()
        new = past.rerun(env={"VALUE": "given"})
        assert new.wait(30) == "completed" and new.output() == "v=given\n"


def test_a_run_of_a_killed_kernel_reads_back_cancelled_with_its_guards_verdict() -> None:
    with other_process_run(["sh", "-c", "echo one; echo two; exec sleep 1000"], name="doomed") as owner:
        live = runstop_nb.load(owner.id)
        assert live.status == "running"
        wait_for(lambda: live.output() == "one\ntwo\n", 10, "the output")
        owner.proc.kill()  # its guard stops the tree and leaves its verdict; the kernel records nothing
        owner.proc.wait()
        wait_for(lambda: not cookie_alive(owner.cookie), 10, "the guard to stop the tree")
        # The guard writes its verdict just after the tree is dead (until then: lost).
        wait_for(lambda: runstop_nb.load(owner.id).status == "cancelled", 5, "the verdict to be read")
        past = runstop_nb.load(owner.id)
        assert isinstance(past, PastRun)
        assert (past.status, past.record.recorded_status) == ("cancelled", "running")
        assert past.ended_at is not None and past.error and "kernel went away" in past.error
        stop = past.last_stop
        assert stop is not None and stop.stopped and stop.cause == "kernel_gone" and stop.verified_by
        assert (past.lines, past.bytes) == (2, 8), "the output, counted from the logs if the row is stale"
        assert [r.id for r in runstop_nb.history(status="cancelled")] == [owner.id]


def test_a_run_whose_fate_is_unknown_shows_as_lost() -> None:
    """No verdict (its helpers died with the kernel, and so did the tree): lost."""
    with other_process_run(["sleep", "1000"], name="unknown") as owner:
        wait_for(lambda: [r for r in runstop_nb.history() if r.id == owner.id], 10, "its row")
        helpers = helpers_of(owner.proc.pid)
        for pid in helpers:
            os.kill(pid, signal.SIGSTOP)
        owner.proc.kill()
        owner.proc.wait()
        kill_pids([*helpers, *cookie_alive(owner.cookie)])
        wait_for(lambda: not cookie_alive(owner.cookie), 10, "the tree to die")
        past = runstop_nb.load(owner.id)
        assert isinstance(past, PastRun)
        assert (past.status, past.record.recorded_status, past.ended_at) == ("lost", "running", None)
        assert [r.id for r in runstop_nb.history(status="lost")] == [owner.id]


# -- several kernels, restarts -------------------------------------------------------------


@pytest.mark.kernel
def test_history_rows_survive_a_kernel_restart(tmp_path: Path, runs_home: Path) -> None:
    cookie = None
    with kernel(tmp_path) as k:
        try:
            k.ok(f"import runstop_nb\ndone = runstop_nb.start({[PY, COUNTER, '--lines', '5', '--interval', '0.01']!r}, "
                 "name='finished')\ndone.wait(30)\nlong = runstop_nb.start(['sleep', '1000'], name='long')")
            done_id, long_id, cookie, old_pid = k.eval("(done.id, long.id, long.spec.cookie, __import__('os').getpid())")
            k.km.restart_kernel(now=True)
            k.kc.wait_for_ready(timeout=60)
            assert k.eval("__import__('os').getpid()") != old_pid
            wait_for(lambda: not cookie_alive(cookie or ""), 15, "the guard to stop the run of the old kernel")
            k.ok("import runstop_nb\nh = {r.id: r for r in runstop_nb.history()}")
            assert k.eval(f"(h[{done_id!r}].status, h[{done_id!r}].returncode, h[{done_id!r}].lines)") == ("completed", 0, 6)
            assert k.eval(f"(h[{long_id!r}].status, h[{long_id!r}].kernel_pid)") == ("cancelled", old_pid)
            assert k.eval(f"h[{long_id!r}].last_stop.cause") == "kernel_gone"
            assert "line 00005" in k.eval(f"runstop_nb.load({done_id!r}).tail(2)")
            k.ok(f"again = runstop_nb.load({done_id!r}).rerun()\nagain.wait(30)")
            assert k.eval("(again.status, again.name)") == ("completed", "finished")
        finally:
            if cookie:
                kill_pids(cookie_alive(cookie))
    assert {r.status for r in runstop_nb.history()} == {"completed", "cancelled"}


def finish(k: Kernel, msg_id: str, timeout: float = 120) -> tuple[str, str]:
    """Collect the reply to a cell sent with ``k.kc.execute``: (status, stderr)."""
    deadline = time.monotonic() + timeout
    stderr = ""
    while True:
        msg = k.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream" and msg["content"]["name"] == "stderr":
            stderr += msg["content"]["text"]
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    while True:
        reply = k.kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply["content"]["status"], stderr


@pytest.mark.kernel
def test_two_kernels_write_one_history_at_the_same_time(tmp_path: Path, runs_home: Path) -> None:
    per_kernel = 8
    with kernel(tmp_path) as a, kernel(tmp_path) as b:
        # Both cells start their runs at one wall-clock moment, each from 8 threads.
        at = time.time() + 3
        code = ("import runstop_nb, sys, threading, time\n"
                "def go(i):\n"
                "    r = runstop_nb.start([sys.executable, '-c', 'print(1)'], name=f'{TAG}-{i}')\n"
                "    r.wait(60)\n"
                f"time.sleep(max(0, {at} - time.time()))\n"
                f"ts = [threading.Thread(target=go, args=(i,)) for i in range({per_kernel})]\n"
                "[t.start() for t in ts]; [t.join() for t in ts]\n"
                "runstop_nb._recorder.flush()  # ends are written a moment after wait() returns")
        a.ok("TAG = 'a'")
        b.ok("TAG = 'b'")
        sent = {k: k.kc.execute(code) for k in (a, b)}
        for k, msg_id in sent.items():
            status, stderr = finish(k, msg_id)
            assert status == "ok" and "runstop_nb" not in stderr, stderr  # no history warning either
        kernels = {a.pid, b.pid}
    records = runstop_nb.history(limit=None)
    assert len(records) == 2 * per_kernel
    assert {r.status for r in records} == {"completed"} and {r.kernel_pid for r in records} == kernels
    assert sorted(r.name for r in records) == sorted(f"{t}-{i}" for t in "ab" for i in range(per_kernel))
    conn = sqlite3.connect(runs_home / "history.sqlite")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


_WRITER = """
import sys, time
from pathlib import Path
from runstop_nb._history import Store
store, tag, n = Store(Path(sys.argv[1]), fallback=False), sys.argv[2], int(sys.argv[3])
row = dict(name=tag, status="running", started_at=0.0, argv="[]", command="[]", shell=0, cwd="/", env_keys="[]",
           env_unset="[]", grace=1.0, kernel_pid=1, kernel_ctime=0.0, host="h", cookie="c", log_dir="/",
           lines=0, bytes=0, updated_at=0.0)
for i in range(n):
    store.upsert(dict(row, id=f"{tag}{i}", started_at=time.time()))
    store.upsert(dict(row, id=f"{tag}{i}", status="completed", lines=i))
"""


def test_store_takes_two_processes_hammering_it(runs_home: Path) -> None:
    runs_home.mkdir(mode=0o700)
    db = runs_home / "history.sqlite"
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(db), tag, "300"], stderr=subprocess.PIPE, text=True)
             for tag in ("x", "y")]
    try:
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
    finally:
        kill_pids([p.pid for p in procs])
    got = rows(runs_home)
    assert len(got) == 600 and {r["status"] for r in got.values()} == {"completed"}
    assert got["y299"]["lines"] == 299


# -- bad databases -------------------------------------------------------------------------


def one_line_warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    found = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage()]
    assert all("\n" not in m for m in found), found
    return found


def test_a_corrupt_database_is_moved_aside_and_history_goes_on(runs_home: Path, caplog: pytest.LogCaptureFixture) -> None:
    home = runs_home_ready()
    garbage = b"this is not a database, whatever it once was\n" * 200
    (home / "history.sqlite").write_bytes(garbage)
    caplog.set_level(logging.WARNING, "runstop_nb")
    run = runstop_nb.start(["sleep", "1000"], name="after-corruption")
    assert [r.id for r in runstop_nb.history()] == [run.id]
    assert len(one_line_warnings(caplog, "was corrupt")) == 1
    (moved,) = home.glob("history.sqlite.corrupt-*")
    assert moved.read_bytes() == garbage, "the bad file is kept for a look, not deleted"
    assert run.stop(grace=1).stopped
    assert rows(home)[run.id]["status"] == "cancelled"


def test_a_database_malformed_inside_is_replaced_on_read(runs_home: Path, caplog: pytest.LogCaptureFixture) -> None:
    home = runs_home_ready()
    db = home / "history.sqlite"
    store = Store(db)
    base = dict(name="n", status="completed", started_at=1.0, argv="[]", command="[]", shell=0, cwd="/",
                env_keys="[]", env_unset="[]", grace=1.0, kernel_pid=1, kernel_ctime=0.0, host="h", cookie="c",
                log_dir="/", lines=0, bytes=0, updated_at=0.0)
    for i in range(300):
        store.upsert(dict(base, id=f"r{i:03d}", error="x" * 200))
    store.call(lambda c: c.execute("PRAGMA wal_checkpoint(TRUNCATE)"))
    store.close()
    data = bytearray(db.read_bytes())
    assert len(data) > 8 * 4096
    data[2 * 4096 : len(data) - 4096] = b"\xa5" * (len(data) - 3 * 4096)  # keep the header page
    db.write_bytes(bytes(data))
    caplog.set_level(logging.WARNING, "runstop_nb")
    assert runstop_nb.history() == []  # a fresh database: the old one is unreadable
    assert len(one_line_warnings(caplog, "was corrupt")) == 1
    assert list(home.glob("history.sqlite.corrupt-*"))
    run = runstop_nb.start([PY, "-c", "print(1)"], name="fresh")
    run.wait(30)
    assert [r.id for r in runstop_nb.history()] == [run.id]


def test_an_unusable_database_falls_back_to_memory(runs_home: Path, caplog: pytest.LogCaptureFixture) -> None:
    home = runs_home_ready()
    (home / "history.sqlite").mkdir()  # neither a database nor movable as one
    caplog.set_level(logging.WARNING, "runstop_nb")
    run = runstop_nb.start(["sleep", "1000"], name="in-memory")
    assert run.status == "running"
    assert len(one_line_warnings(caplog, "in memory")) == 1
    assert [r.id for r in runstop_nb.history()] == [run.id]
    assert run.stop(grace=1).stopped
    assert runstop_nb.load(run.id).status == "cancelled"


def runs_home_ready() -> Path:
    home = runs_home()
    assert _home.db_path() == home / "history.sqlite"
    return home
