"""``runstop``: list, inspect, follow, stop and reap runs, and review their worktrees, from a terminal.

Which runs home it reads (``_home.find_home``, docs/cli.md): ``--home DIR`` (before or
after the subcommand), else ``$RUNSTOP_NB_HOME``, else ``./.runstop`` if it exists, else
the one ``.runstop`` with a history in a running Jupyter server's folder or a subfolder
of it, or in a subfolder of the current folder (it says on stderr which it took). It never
creates a runs home.

A RUN argument is a run id, a unique prefix of one (at least 4 characters), or a name
(its latest run). Output meant for people collapses ``\\r`` progress frames as the widget
does and drops colour codes unless stdout is a terminal (``--color``); ``logs --raw``
prints the log's bytes exactly. Every error is one line on stderr, with exit status 1
(2 for a usage error).

``runstop stop`` on a run whose kernel is alive does not kill behind the kernel's back:
it marks the run's row, and the kernel (its history thread checks every 0.5 s, even
during a blocking cell) stops the run exactly as its Stop button would, so the run ends
``cancelled`` with a full StopResult. If the kernel does not act in time (it is hung,
or its history thread is gone), the CLI stops the tree itself by its cookie and says
so. A run whose kernel is dead is stopped directly, by its cookie. With a name that
several live runs carry (one per kernel), it stops the latest and names the others.
"""

from __future__ import annotations

import argparse
import codecs
import dataclasses
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from . import _clistop
from ._history import store_for
from ._home import DB_NAME, FOLDER, HOME_VAR, db_path, find_home
from ._janitor import owner_alive
from ._logs import STREAMS, LogFiles, read_range
from ._pastrun import PastRun, cannot_check, cannot_check_owner, command_text, elapsed, history, past
from ._record import RunRecord
from ._recorder import HOST
from ._runstate import short_path
from ._status import STATUSES, UNSETTLED
from ._terminal import clean, plain
from ._units import clock, plural, size
from ._worktree import remove as remove_worktree
from .errors import RunNotFoundError, RunstopError

FOLLOW_EVERY = 0.2  # seconds between reads of new output in `logs -f`
WIDTH = 100  # columns `ls` fits in when stdout is not a wider terminal
RUN_HELP = "a run id, a unique id prefix (4 characters or more), or a name (its latest run)"


class CliError(Exception):
    """A one-line error the CLI prints as ``runstop: MESSAGE`` (exit status 1)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage block
        self.exit(2, f"{self.prog}: {message}; `{self.prog} --help` shows the usage\n")


def _status_word(text: str) -> str:
    if text not in STATUSES:
        raise argparse.ArgumentTypeError(f"unknown status {text!r}; use one of {', '.join(STATUSES)}")
    return text


def _parser() -> argparse.ArgumentParser:
    home_help = ("the runs home to read (default: $RUNSTOP_NB_HOME, else ./.runstop, else the one found "
                 "near a running Jupyter server or in a subfolder; see docs/cli.md)")
    common = _Parser(add_help=False)
    common.add_argument("--home", default=argparse.SUPPRESS, help=home_help)
    colour = _Parser(add_help=False)
    colour.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        help="colour codes: kept on a terminal (auto), always, or never")
    ap = _Parser(prog="runstop", description="Inspect and stop runstop_nb runs.",
                 epilog=f"RUN (for show, logs, stop, diff, ...) is {RUN_HELP}.")
    ap.add_argument("--home", help=home_help)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("ls", parents=[common], help="list runs, newest first")
    p.add_argument("-n", "--limit", type=int, default=50, help="at most this many (0: all)")
    p.add_argument("--name", help="only runs with this name")
    p.add_argument("--status", action="append", type=_status_word,
                   help=f"only runs in this status (repeatable): {', '.join(STATUSES)}")
    p.add_argument("--json", action="store_true", help="one JSON object per run, as a list")
    p = sub.add_parser("show", parents=[common, colour], help="a run's metadata and the tail of its output")
    p.add_argument("id", metavar="RUN", help=RUN_HELP)
    p.add_argument("-n", "--lines", type=int, default=20, help="tail lines to show")
    p = sub.add_parser("logs", parents=[common, colour], help="a run's whole output")
    p.add_argument("id", metavar="RUN", help=RUN_HELP)
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new output until the run ends")
    p.add_argument("--stream", choices=("both", *STREAMS), default="both")
    p.add_argument("--raw", action="store_true", help="the log's bytes exactly (no \\r collapsing, colours kept)")
    p = sub.add_parser("stop", parents=[common], help="stop runs, whole process tree, verified")
    p.add_argument("ids", nargs="*", metavar="RUN", help=RUN_HELP)
    p.add_argument("--all", action="store_true", help="every run of this runs home that is not over")
    p.add_argument("--grace", type=float, help="seconds between SIGTERM and SIGKILL (default: the run's)")
    p = sub.add_parser("reap", parents=[common],
                       help="stop agent processes whose kernel died (all of this user's, or these)")
    p.add_argument("ids", nargs="*", metavar="RUN", help="a run id, id prefix, name or cookie")
    p.add_argument("--dry-run", action="store_true", help="only list them")
    p.add_argument("--grace", type=float)
    p = sub.add_parser("diff", parents=[common], help="what a --worktree run changed, as a git diff")
    p.add_argument("id", metavar="RUN", help=RUN_HELP)
    p.add_argument("--stat", action="store_true", help="one line per file with +/- counts")
    wt = sub.add_parser("worktree", parents=[common], help="manage the git worktrees of --worktree runs")
    wsub = wt.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = wsub.add_parser("prune", parents=[common], help="remove runs' worktrees and their branches")
    p.add_argument("ids", nargs="*", metavar="RUN", help=RUN_HELP)
    p.add_argument("--ended", action="store_true", help="every ended run's worktree")
    p.add_argument("--force", action="store_true", help="also discard uncommitted or unmerged work")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "stop" and args.all == bool(args.ids):
        parser.error("stop: give the runs to stop, or --all")
    if args.command == "worktree" and args.ended == bool(args.ids):
        parser.error("worktree prune: give the runs whose worktrees to remove, or --ended (not both)")
    try:
        _use_home(args)
        command = {"ls": _ls, "show": _show, "logs": _logs, "stop": lambda a: _clistop.stop(a, find_run), "reap": _clistop.reap,
                   "diff": _diff, "worktree": _prune}[args.command]
        return command(args)
    except BrokenPipeError:  # `runstop logs ID | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (CliError, RunstopError, OSError, ValueError) as e:
        print(f"runstop: {_one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and not isinstance(e, RunstopError) and e.strerror:
        return f"{e.filename}: {e.strerror.lower()}" if e.filename else e.strerror.lower()
    return " ".join(str(e).split()) or type(e).__name__


def _use_home(args: argparse.Namespace) -> None:
    """Choose the runs home (``_home.find_home``), check it can be read, and point the history at it."""
    choice = find_home(args.home)
    if choice.rule == "ambiguous":
        raise CliError(f"several runs homes found: {', '.join(map(str, choice.candidates))}; "
                       "pick one with --home DIR")
    if choice.path is None:
        if args.command == "reap":
            return  # reaping needs no history: it finds orphans by their processes
        raise CliError(f"no runs home found: looked in {'; '.join(choice.looked)}; "
                       f"pass --home DIR or set {HOME_VAR}")
    home, nested = choice.path, choice.path / FOLDER
    if os.path.isdir(home) and not os.access(home, os.R_OK | os.X_OK):
        st = os.stat(home)
        raise CliError(f"{home}: cannot read this runs home (permission denied: mode {st.st_mode & 0o777:03o}, "
                       f"owner uid {st.st_uid}); fix its permissions or run as a user who can read it")
    if not os.path.isfile(home / DB_NAME) and os.path.isfile(nested / DB_NAME):  # given the folder holding it
        raise CliError(f"{home}: no runs home there (but {nested} is one: pass --home {nested})")
    if not os.path.isdir(home):
        if args.command == "reap":
            os.environ[HOME_VAR] = str(home)
            return
        raise CliError(f"{home}: no runs home there")
    if choice.rule == "found":
        print(f"runstop: using runs home {home} (found {choice.found_in})", file=sys.stderr)
    os.environ[HOME_VAR] = str(home)
    store_for(db_path(), fallback=False)  # the CLI reports an unusable history; it never works in memory


def recorded_count() -> int:
    """How many runs the history holds (0 when it has none yet)."""
    store = store_for(db_path())
    if not store.exists():
        return 0
    return int(store.call(lambda c: c.execute("SELECT count(*) FROM runs").fetchone()[0]))


def find_run(run_id: str) -> PastRun:
    """``past(run_id)``, with a not-found error that says what the history holds and points to ``runstop ls``."""
    try:
        return past(run_id)
    except RunNotFoundError:
        pass
    home, total = db_path().parent, recorded_count()
    prefixed = [r.id for r in history(limit=None) if len(run_id) >= 4 and r.id.startswith(run_id)]
    if len(prefixed) > 1:
        raise CliError(f"{run_id!r} is the start of several run ids ({', '.join(prefixed[:5])}); give more of it")
    short = " (an id prefix needs 4 characters or more)" if len(run_id) < 4 else ""
    raise CliError(f"no run {run_id!r} in {home} ({plural(total, 'run')} recorded){short}; "
                   "`runstop ls` lists them")


def _ls(args: argparse.Namespace) -> int:
    records = history(limit=args.limit or None, name=args.name, status=args.status)
    if args.json:
        print(json.dumps([_json_row(r) for r in records], indent=1))
    if not records:
        asked = (f" named {args.name!r}" if args.name else "") + (
            f" in status {' or '.join(dict.fromkeys(args.status))}" if args.status else "")
        print(f"no runs{asked} in {db_path().parent} ({plural(recorded_count(), 'run')} recorded)",
              file=sys.stderr)
    elif not args.json:
        print(ls_table(records, _width()))
    return 0


def _json_row(rec: RunRecord) -> dict[str, Any]:
    row = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in dataclasses.asdict(rec).items()}
    if row.get("agent") is None and rec.format in ("claude", "codex", "gemini"):
        summary = PastRun(rec).agent  # the history kept none: the log rebuilds it
        row["agent"] = summary.as_dict() if summary is not None else None
    return row


def _width() -> int:
    return max(WIDTH, shutil.get_terminal_size((WIDTH, 24)).columns) if sys.stdout.isatty() else WIDTH


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def _short_command(rec: RunRecord) -> str:
    """The command with its absolute paths said short (relative, or under ~)."""
    words = command_text(rec).split()  # a newline in a shell command would break the row
    if rec.shell or not words:
        return " ".join(words)
    return " ".join([os.path.basename(words[0]), *(short_path(w, rec.cwd) if w.startswith("/") else w
                                                   for w in words[1:])])


def ls_table(records: Sequence[RunRecord], width: int = WIDTH) -> str:
    """Records, newest first, as an aligned table that fits ``width`` columns (the command is cut)."""
    rows = [("ID", "NAME", "STATUS", "EXIT", "STARTED", "ELAPSED", "LINES", "COMMAND")]
    unchecked = [r for r in records if cannot_check(r)]
    for r in sorted(records, key=lambda r: r.started_at, reverse=True):
        rows.append((r.id, _cut(r.name, 16), r.status + ("?" if r in unchecked else ""),
                     "" if r.returncode is None else str(r.returncode),
                     r.started_at.astimezone().strftime("%m-%d %H:%M"), clock(elapsed(r)), f"{r.lines:,}",
                     _short_command(r)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    room = max(20, width - sum(widths) - 2 * len(widths))
    lines = ["  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)) + "  " + _cut(row[-1], room)
             for row in rows]
    for r in unchecked:
        lines.append(f"{r.id}: ? its kernel is gone and its processes belong to {cannot_check_owner(r)}; "
                     "whether they still run cannot be checked from here")
    return "\n".join(line.rstrip() for line in lines)


def _colour(args: argparse.Namespace) -> bool:
    if args.color == "auto":
        return sys.stdout.isatty() and "NO_COLOR" not in os.environ
    return bool(args.color == "always")


def _show(args: argparse.Namespace) -> int:
    run = find_run(args.id)
    rec = run.record
    for key, value in _fields(run):
        print(f"{key:<10}{value}")
    tail = run.tail(args.lines)  # \r progress already collapsed, as the widget shows it
    if not _colour(args):
        tail = plain(tail)
    print(f"\n--- last {args.lines} lines ---")
    sys.stdout.write(tail if tail.endswith("\n") or not tail else tail + "\n")
    if cannot_check(rec):
        print(f"\nnote: its kernel is gone and its processes belong to {cannot_check_owner(rec)}; whether they "
              "still run cannot be checked from here", file=sys.stderr)
    return 0


def _fields(run: PastRun) -> list[tuple[str, str]]:
    rec = run.record
    status = rec.status + (f" (exit {rec.returncode})" if rec.returncode is not None else "")
    if rec.status != rec.recorded_status:
        status += f"; recorded as {rec.recorded_status}, but its kernel is gone"
    kernel = "alive" if rec.host != HOST or owner_alive(rec.kernel_pid, rec.kernel_ctime) else "dead"
    when = "%Y-%m-%d %H:%M:%S"
    fields = [
        ("id", rec.id), ("name", rec.name), ("status", status), ("command", command_text(rec)),
        ("cwd", rec.cwd), ("started", rec.started_at.astimezone().strftime(when)),
        ("ended", rec.ended_at.astimezone().strftime(when) if rec.ended_at else "-"),
        ("elapsed", clock(elapsed(rec))), ("pid", str(rec.pid)),
        ("kernel", f"pid {rec.kernel_pid} on {rec.host} ({kernel})"),
        ("output", f"{run.lines} lines, {size(run.bytes)}"),
        ("env keys", (", ".join(rec.env_keys) + " (values are not recorded)") if rec.env_keys else "-"),
        ("logs", str(run.log_dir)),
    ]
    if run.worktree is not None:
        fields.append(("worktree", f"{run.worktree.path} (branch {run.worktree.branch}; `runstop diff {rec.id}`)"))
    fields += _agent_fields(run)
    if run.last_stop is not None:
        fields.append(("last stop", str(run.last_stop)))
    if rec.error:
        fields.append(("error", rec.error))
    return fields


def _agent_fields(run: PastRun) -> list[tuple[str, str]]:
    """The agent summary (issue 12): kind, session, model, turns, tool calls, tokens, cost."""
    summary = run.agent
    if summary is None:
        return []
    u = summary.usage
    cost = "not reported by the CLI" if u.cost_usd is None else f"${u.cost_usd:.4f}"
    return [
        ("agent", f"{summary.kind}" + (" (ended with an error)" if summary.is_error else "")
         + (f"; waiting: {summary.waiting}" if summary.waiting else "")),
        ("session", summary.session_id or "-"), ("model", summary.model or "-"),
        ("turns", f"{summary.turns:,} turns, {summary.tool_calls:,} tool calls"),
        ("tokens", f"{u.input_tokens:,} in ({u.cached_input_tokens:,} cached), {u.output_tokens:,} out"),
        ("cost", cost),
    ]


class _Lines:
    """One stream's bytes as display lines: ``\\r`` collapsed, cursor codes dropped, colours kept or not."""

    def __init__(self, colour: bool) -> None:
        self.colour = colour
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.pending = ""

    def feed(self, data: bytes, final: bool = False) -> str:
        parts = (self.pending + self.decoder.decode(data, final)).split("\n")
        self.pending = parts.pop()  # an unfinished line waits for its end, unless this is the last read
        if final and self.pending:
            parts.append(self.pending)
            self.pending = ""
        return "".join(self._show(p) + "\n" for p in parts)

    def _show(self, line: str) -> str:
        line = clean(line)
        return line if self.colour else plain(line)


def _logs(args: argparse.Namespace) -> int:
    rec = find_run(args.id).record
    files = LogFiles(Path(rec.log_dir))
    out = sys.stdout.buffer
    streams = STREAMS if args.stream == "both" else (args.stream,)
    lines = {s: _Lines(_colour(args)) for s in streams}

    def emit(stream: str, data: bytes, final: bool = False) -> None:
        out.write(data if args.raw else lines[stream].feed(data, final).encode("utf-8", "replace"))

    offsets = dict.fromkeys(STREAMS, 0)
    for stream, off, n in files.chunks():  # what exists, interleaved as it appeared
        if stream in streams:
            emit(stream, read_range(files.path(stream), off, n))
        offsets[stream] = off + n
    ended = not args.follow or rec.status not in UNSETTLED
    next_check = time.monotonic() + 1.0
    while True:
        for stream in streams:  # after the end, one last read catches the final bytes
            data = read_range(files.path(stream), offsets[stream], None)
            offsets[stream] += len(data)
            emit(stream, data, final=ended)
        out.flush()
        if ended:
            return 0
        time.sleep(FOLLOW_EVERY)
        if time.monotonic() >= next_check:
            next_check = time.monotonic() + 1.0
            ended = past(rec.id).status not in UNSETTLED


def _diff(args: argparse.Namespace) -> int:
    run = find_run(args.id)
    if run.worktree is None:
        raise CliError(f"run {run.name} ({run.id}) had no worktree, so there is no diff; "
                       "start a run with --worktree (or worktree=True) to get one")
    if args.stat:
        changes = run.diffstat()
        for c in changes:
            counts = "binary" if c.added is None else f"+{c.added} -{c.removed}"
            moved = f" (from {c.old_path})" if c.old_path else ""
            print(f"{c.status:<10}{counts:>14}  {c.path}{moved}")
        print(f"{plural(len(changes), 'file')} changed since {run.worktree.base[:10]} on {run.worktree.branch}")
    else:
        sys.stdout.write(run.diff())
    return 0


def _prune(args: argparse.Namespace) -> int:
    if args.ended:
        runs = [PastRun(r) for r in history(limit=None) if r.worktree and r.status not in UNSETTLED]
        runs = [r for r in runs if r.worktree is not None and os.path.isdir(r.worktree.path)]
        if not runs:
            print(f"no worktrees of ended runs left in {db_path().parent}")
            return 0
    else:
        runs = [find_run(i) for i in args.ids]
    ok = True
    for run in runs:
        tree, label = run.worktree, f"{run.name} ({run.id})"
        if tree is None:
            ok = False
            print(f"runstop: {label} had no worktree; nothing to remove", file=sys.stderr)
        elif run.status in UNSETTLED or cannot_check(run.record):
            ok = False
            print(f"runstop: {label} is {run.status}; stop it first (`runstop stop {run.id}`)", file=sys.stderr)
        else:
            try:
                remove_worktree(tree, force=args.force)
            except RunstopError as e:
                ok = False
                print(f"runstop: {label}: kept: {_one_line(e)}", file=sys.stderr)
            else:
                print(f"{label}: removed worktree {tree.path} and branch {tree.branch}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
