"""The run history: one SQLite row per run, in the runs home, shared by kernels and the CLI.

Why SQLite (stdlib ``sqlite3``) in WAL mode: several kernels and the ``runstop`` CLI read
and write one file at once. WAL lets readers run during a write, and ``busy_timeout``
makes a writer wait its turn instead of failing. Every write is one whole-row upsert, so
a crash leaves a run at the last state written.

A bad database never breaks the kernel (IPython's history does the same): a corrupt file
is moved aside to ``history.sqlite.corrupt-<time>-<pid>`` and a fresh one started; a file
that cannot be opened or written at all is replaced, for this process, by an in-memory
database. Either way one warning line is logged. Times are epoch floats in the database
and aware UTC datetimes in records.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from ._kernelstate import kernel_state
from ._record import RunRecord, record_from_row
from ._status import LIVE
from .errors import HistoryError

log = logging.getLogger("runstop_nb")
T = TypeVar("T")
SCHEMA_VERSION = 2
BUSY_MS = 5000  # a writer waits this long for another kernel's write before giving up
MAX_OPEN_STORES = 8  # databases kept open per process (each test has its own runs home)
_LIVE_SQL = ", ".join(f"'{s}'" for s in LIVE)  # recorded statuses of a run that has not ended

# (name, SQL type). A row is always written whole, except stop_requested, which only the
# CLI sets (`runstop stop` on a live kernel's run) and the owning kernel polls.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "TEXT PRIMARY KEY"),
    ("name", "TEXT NOT NULL"),
    ("status", "TEXT NOT NULL"),
    ("returncode", "INTEGER"),
    ("started_at", "REAL NOT NULL"),
    ("ended_at", "REAL"),
    ("argv", "TEXT NOT NULL"),  # JSON list
    ("command", "TEXT NOT NULL"),  # JSON: what start() was given (a str with shell=True)
    ("shell", "INTEGER NOT NULL"),
    ("cwd", "TEXT NOT NULL"),
    ("env_keys", "TEXT NOT NULL"),  # JSON list of keys the run set; values are never stored
    ("env_unset", "TEXT NOT NULL"),  # JSON list of keys the run removed
    ("timeout", "REAL"),
    ("grace", "REAL NOT NULL"),
    ("pid", "INTEGER"),
    ("error", "TEXT"),
    ("kernel_pid", "INTEGER NOT NULL"),
    ("kernel_ctime", "REAL NOT NULL"),  # with kernel_pid: the owner, immune to pid reuse
    ("host", "TEXT NOT NULL"),
    ("cookie", "TEXT NOT NULL"),  # RUNSTOP_NB_COOKIE: finds the tree once its kernel is gone
    ("log_dir", "TEXT NOT NULL"),
    ("lines", "INTEGER NOT NULL DEFAULT 0"),
    ("bytes", "INTEGER NOT NULL DEFAULT 0"),
    ("stop_stopped", "INTEGER"),
    ("stop_reason", "TEXT"),
    ("stop_prior_status", "TEXT"),
    ("stop_status", "TEXT"),
    ("stop_escalated", "INTEGER"),
    ("stop_unkillable", "TEXT"),  # JSON list of [pid, status, name]
    ("stop_signalled", "INTEGER"),
    ("stop_swept", "INTEGER"),
    ("stop_elapsed_s", "REAL"),
    ("stop_error", "TEXT"),
    ("stop_verified_by", "TEXT"),  # what established the tree was dead: subreaper, cgroup, scan
    ("stop_cause", "TEXT"),  # why it was stopped: user, timeout, budget, kernel_gone, ...
    ("stop_note", "TEXT"),
    ("containment", "TEXT"),  # cgroup, guard or none
    ("cgroup", "TEXT"),  # the run's cgroup v2 folder, when it had one
    ("uid", "INTEGER"),  # the user the run's processes belong to
    ("format", "TEXT"),  # stdout as read: claude, codex, gemini, text (auto while undecided)
    ("agent", "TEXT"),  # JSON: the agent's summary (session, model, turns, tool calls, usage, result)
    ("parent_id", "TEXT"),  # the run this one resumes
    ("input", "TEXT"),  # null, pipe or pty
    ("worktree", "TEXT"),  # JSON: path, branch, base commit, repository
    ("options", "TEXT"),  # JSON: idle, max_cost, max_tokens, containment (what rerun and resume keep)
    ("updated_at", "REAL NOT NULL"),
    ("stop_requested", "REAL"),
    ("stop_request_grace", "REAL"),  # the grace `runstop stop --grace` asked for, else NULL
)
NAMES = tuple(name for name, _ in COLUMNS)
_CLI_ONLY = ("stop_requested", "stop_request_grace")  # never part of the kernel's whole-row writes
_ROW = tuple(n for n in NAMES if n not in _CLI_ONLY)
_UPSERT = (
    f"INSERT INTO runs ({', '.join(_ROW)}) VALUES ({', '.join('?' * len(_ROW))}) "
    f"ON CONFLICT(id) DO UPDATE SET {', '.join(f'{n}=excluded.{n}' for n in _ROW[1:])}"
)


# -- sqlite error kinds (extended result codes: the low byte is the primary code) --------

def _code(e: sqlite3.Error) -> int:
    return int(getattr(e, "sqlite_errorcode", -1)) & 0xFF


BUSY_RETRY_S = 3.0  # seconds a busy database is retried before the error is reported


def _busy(e: sqlite3.Error) -> bool:
    return _code(e) in (5, 6) or "locked" in str(e) or "busy" in str(e)


def _corrupt(e: sqlite3.Error) -> bool:
    return _code(e) in (11, 26) or "malformed" in str(e) or "not a database" in str(e)


def _connect(path: Path) -> sqlite3.Connection:
    """Open (creating 0600 if needed) and prepare the database; raise if it is unusable."""
    if str(path) != ":memory:":
        # sqlite creates files 0644 under the usual umask; the -wal and -shm files it makes
        # later copy this file's mode, so creating it 0600 here keeps all three private.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    conn = sqlite3.connect(str(path), timeout=BUSY_MS / 1000, isolation_level=None, check_same_thread=False)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout={BUSY_MS}")
        conn.execute("PRAGMA journal_mode=WAL")  # the first read: a corrupt file fails here
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL stays consistent; a crash loses no more than the last write
        conn.execute(f"CREATE TABLE IF NOT EXISTS runs ({', '.join(f'{n} {t}' for n, t in COLUMNS)})")
        have = {r["name"] for r in conn.execute("PRAGMA table_info(runs)")}
        for name, sql_type in COLUMNS:  # a database from an older version gains new columns
            if name not in have:
                conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {sql_type.split()[0]}")
        conn.execute("CREATE INDEX IF NOT EXISTS runs_started ON runs(started_at)")
        conn.execute("CREATE INDEX IF NOT EXISTS runs_name ON runs(name, started_at)")
        conn.execute("CREATE INDEX IF NOT EXISTS runs_status ON runs(status, started_at)")
        conn.execute("CREATE INDEX IF NOT EXISTS runs_cookie ON runs(cookie)")
        if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes, so two kernels never both move a database aside."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock; the race only loses a fresh file
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _is_corrupt(path: Path) -> bool:
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=BUSY_MS / 1000)
    except sqlite3.Error:
        return False
    try:
        return bool(conn.execute("PRAGMA quick_check").fetchone()[0] != "ok")
    except sqlite3.DatabaseError as e:
        return _corrupt(e)
    finally:
        conn.close()


def move_aside(path: Path) -> Path | None:
    """Rename a corrupt database (and its WAL) out of the way; None if it is fine after all."""
    with _file_lock(path.with_name(path.name + ".lock")):
        if not path.exists() or not _is_corrupt(path):
            return None  # another process already replaced it
        dest = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        os.replace(path, dest)
        for suffix in ("-wal", "-shm", "-journal"):
            side = Path(f"{path}{suffix}")
            try:
                if suffix == "-shm":
                    side.unlink()  # only an index of the WAL; rebuilt from it
                else:
                    os.replace(side, Path(f"{dest}{suffix}"))
            except FileNotFoundError:
                pass
        return dest


class Store:
    """One history database, used from any thread (a lock serialises one connection).

    ``fallback=True`` (a kernel) keeps working in memory when the file is unusable;
    ``fallback=False`` (the CLI) raises HistoryError instead.
    """

    def __init__(self, path: Path, *, fallback: bool = True) -> None:
        self.path = path
        self.fallback = fallback
        self.memory = False
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def exists(self) -> bool:
        return self.memory or self._conn is not None or self.path.exists()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and not self.memory:
                self._conn.close()
                self._conn = None

    def _open(self) -> sqlite3.Connection:
        try:
            return _connect(self.path)
        except sqlite3.Error as e:
            if _busy(e):
                raise
            if not _corrupt(e):
                return self._to_memory(e)
            return self._recover(e)
        except OSError as e:
            return self._to_memory(e)

    def _recover(self, error: sqlite3.Error) -> sqlite3.Connection:
        try:
            moved = move_aside(self.path)
            if moved is not None:
                log.warning("runstop_nb: the run history %s was corrupt (%s); moved it to %s and started a new one",
                            self.path, error, moved.name)
            return _connect(self.path)
        except (sqlite3.Error, OSError) as e:
            return self._to_memory(e)

    def _to_memory(self, error: BaseException) -> sqlite3.Connection:
        if not self.fallback:
            raise HistoryError(f"cannot use the run history at {self.path} ({error}); check the folder's permissions")
        log.warning("runstop_nb: cannot use the run history at %s (%s); keeping this kernel's history in memory",
                    self.path, error)
        self.memory = True
        return _connect(Path(":memory:"))

    def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)``; retry while busy; on corruption or a lost file, recover once.

        SQLite can answer SQLITE_BUSY at once, without its busy handler, while several
        kernels set up one fresh WAL database (the journal-mode switch, the schema): such
        an error is retried with backoff for up to ~3 s before it is reported.
        """
        with self._lock:
            recovered, delay = False, 0.02
            deadline = time.monotonic() + BUSY_RETRY_S
            while True:
                try:
                    if self._conn is None:
                        self._conn = self._open()
                    return fn(self._conn)
                except sqlite3.Error as e:
                    if _busy(e) and time.monotonic() < deadline:
                        time.sleep(delay)
                        delay = min(delay * 2, 0.2)
                        continue
                    lost = isinstance(e, sqlite3.OperationalError)  # readonly, cannot open, I/O
                    if _busy(e) or self.memory or recovered or not (lost or _corrupt(e)) or self._conn is None:
                        raise
                    recovered = True
                    self._conn.close()
                    self._conn = None
                    self._conn = self._recover(e) if _corrupt(e) else self._to_memory(e)

    # -- operations -----------------------------------------------------------------------

    def upsert(self, row: dict[str, Any]) -> None:
        self.call(lambda c: c.execute(_UPSERT, [row.get(n) for n in _ROW]))

    def select(self, where: str = "", params: Iterable[Any] = (), limit: int | None = None) -> list[RunRecord]:
        sql = f"SELECT * FROM runs {('WHERE ' + where) if where else ''} ORDER BY started_at DESC"
        args = list(params)
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        if not self.exists():
            return []  # nothing was ever recorded here; reading must not create the file
        return [record_from_row(r) for r in self.call(lambda c: c.execute(sql, args).fetchall())]

    def update_if_live(self, run_id: str, fields: dict[str, Any]) -> bool:
        """Update a run that is still recorded live; False if it had ended meanwhile."""
        fields = {**fields, "updated_at": time.time()}
        sets = ", ".join(f"{k}=?" for k in fields)
        sql = f"UPDATE runs SET {sets} WHERE id=? AND status IN ({_LIVE_SQL})"
        return bool(self.call(lambda c: c.execute(sql, [*fields.values(), run_id]).rowcount))

    def request_stop(self, run_id: str, grace: float | None = None) -> None:
        """Ask the run's kernel to stop it (``runstop stop``), with this grace if given."""
        self.call(lambda c: c.execute("UPDATE runs SET stop_requested=?, stop_request_grace=? WHERE id=?",
                                      (time.time(), grace, run_id)))

    def stop_requests(self, ids: Iterable[str]) -> dict[str, float | None]:
        """The runs among ``ids`` that ``runstop stop`` asked to stop, with the grace asked for."""
        wanted = list(ids)
        if not wanted:
            return {}
        sql = (f"SELECT id, stop_request_grace FROM runs WHERE stop_requested IS NOT NULL "
               f"AND id IN ({', '.join('?' * len(wanted))})")
        return {r["id"]: r["stop_request_grace"] for r in self.call(lambda c: c.execute(sql, wanted).fetchall())}


def store_for(path: Path, *, fallback: bool = True) -> Store:
    """This process's Store for ``path`` (kept in the reload-proof kernel state)."""
    state = kernel_state()
    stores: dict[Path, Store] = state.service("history_stores", dict)
    with state.lock:
        store = stores.pop(path, None) or Store(path, fallback=fallback)
        stores[path] = store  # most recently used last
        # Close the least recently used files; a memory store is kept (its rows exist nowhere else).
        extra = len(stores) - MAX_OPEN_STORES
        for old_path in [p for p, s in stores.items() if not s.memory][: max(0, extra)]:
            stores.pop(old_path).close()
    return store
