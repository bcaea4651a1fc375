"""The magics: ``%agent_run``, ``%%agent_run``, ``%agent_stop``, ``%agent_ls``.

Thin by design: parse with IPython's ``magic_arguments`` (so ``%agent_run?`` is the help),
turn every bad input into a one-line ``UsageError``, call the Python API, display.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shlex
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.utils.text import DollarFormatter

from . import _spec
from ._api import get, launcher_for, runs, start
from ._listing import RunTable
from ._registry import registry
from ._run import Run
from .errors import RunstopError

BACKEND_KEYS = ("backend", "ray_address", "ray_options")  # start() arguments for the launcher, not the spec

# Procfile style: "reviewer: claude -p 'review'". A colon must be followed by a space,
# so URLs and "C:" never read as names.
NAMED_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]{0,63}):\s+(\S.*)$")
USAGE = "%agent_run [options] -- COMMAND [ARG...]"


def in_kernel(shell: Any) -> bool:
    """True where widgets can be shown (a Jupyter kernel), False in terminal IPython."""
    return getattr(shell, "kernel", None) is not None


@magics_class
class AgentMagics(Magics):
    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self._exec_marker: object = None
        self._line_index = 0

    @magic_arguments()
    @argument("--name", help="name of the run (unique among live runs)")
    @argument("--cwd", help="working folder of the agent (default: the kernel's)")
    @argument("--env", action="append", default=[], metavar="KEY=VALUE",
              help="set an environment variable for the agent (repeatable)")
    @argument("--timeout", type=float, metavar="S", help="stop the run after S seconds (ends timed_out)")
    @argument("--grace", type=float, metavar="S", help="seconds between SIGTERM and SIGKILL on stop (default 3)")
    @argument("--restart", action="store_true", help="stop a live run with the same name/cell first (verified), then start anew")
    @argument("--wait", action="store_true", help="block the cell until the run ends; interrupting the kernel stops it")
    @argument("--shell", action="store_true", help="run the command text with $SHELL -c")
    @argument("--pty", action="store_true",
              help="run in a pseudo-terminal: output as a terminal shows it (line-buffered, colours), input through it")
    @argument("--stdin", action="store_true", help="keep a pipe to the agent's stdin: run.send(text), an input box")
    @argument("--format", choices=("auto", "claude", "codex", "gemini", "text"), default="auto",
              help="how to read stdout: as an agent's JSON event stream (cards, tokens, cost) or as text (default: auto)")
    @argument("--max-cost", type=float, metavar="USD", help="stop the run once the agent reports spending more")
    @argument("--max-tokens", type=int, metavar="N", help="stop the run once input + output tokens exceed N")
    @argument("--idle", type=float, metavar="S", help="show 'idle' after S seconds without output (default 120)")
    @argument("--worktree", action="store_true", help="run in a git worktree of its own (run.diff() afterwards)")
    @argument("--containment", choices=("auto", "cgroup", "guard"),
              help="what holds the tree: a cgroup where possible (auto), or the subreaper guard alone")
    @argument("--cols", type=int, metavar="N", help="%%%%agent_run only: fixed number of grid columns")
    @argument("--backend", choices=("local", "ray"), default="local",
              help="where the agent runs: this machine, or a job on a Ray cluster (docs/ray.md)")
    @argument("--ray-address", metavar="URL",
              help="the Ray dashboard (default $RUNSTOP_NB_RAY_ADDRESS, then $RAY_ADDRESS)")
    @argument("--num-cpus", type=float, metavar="N", help="Ray: CPUs the job reserves")
    @argument("--num-gpus", type=float, metavar="N", help="Ray: GPUs the job reserves")
    @argument("--resources", action="append", default=[], metavar="NAME=N",
              help="Ray: a custom resource the job reserves (repeatable)")
    @argument("--working-dir", metavar="DIR", help="Ray: a folder uploaded as the job's working folder")
    @argument("--detach", action="store_true", help="Ray: the job runs on after this kernel dies")
    @argument("command", nargs=argparse.REMAINDER, help="the command and its arguments, after --")
    @no_var_expand
    @line_cell_magic
    def agent_run(self, line: str, cell: str | None = None) -> None:
        """Start agents as subprocesses and show them as live widgets.

        Line form: one agent.

            %agent_run --name reviewer -- python agents/counter.py --lines 100

        Cell form: one agent per non-blank, non-comment line, started together and shown
        in one grid. A line may start with a name, Procfile style: ``name: command``.

            %%agent_run --cols 2
            counter: python agents/counter.py
            tree:    python agents/spawner.py

        Re-running a cell never duplicates an agent: a live run with the same name (or,
        unnamed, from the same cell and position) is shown again instead. Use --restart to
        stop it (verified dead) and start a new one. Stop buttons end the whole process
        tree. Agents never receive the kernel's interrupt, except a --wait run, which it stops.
        """
        args = _parse(self.agent_run, line)
        self._expand_args(args)
        opts = self._options(args)
        if cell is None:
            if args.cols is not None:
                raise UsageError("--cols applies to %%agent_run (a grid); drop it here")
            command = self._command(args, line)
            key = f"name:{args.name}" if args.name else self._key(f"line{self._next_line_index()}", command)
            jobs = [(args.name, command, key)]
        else:
            if args.name or args.command:
                raise UsageError("%%agent_run takes one agent per line; name them as 'name: command'")
            if args.cols is not None and not 1 <= args.cols <= 12:
                raise UsageError(f"--cols must be between 1 and 12, not {args.cols}")
            jobs = self._cell_jobs(cell, args.shell)
        slots = self._plan(jobs, opts, args.restart)
        views = self._display(len(slots), args.cols, single=cell is None) if in_kernel(self.shell) else None
        runs_ = self._launch(jobs, slots, opts, views)
        if not runs_:
            return
        if views is not None:
            if args.wait:
                self._wait(runs_)
        else:
            for run in runs_:
                print(f"started {run.name!r} pid {run.pid}: {' '.join(run.argv)} (log: {run.log_dir})")
            if args.wait:
                self._wait(runs_, stream=True)

    @magic_arguments()
    @argument("--all", action="store_true", help="stop every live run of this kernel")
    @argument("--grace", type=float, metavar="S", help="seconds between SIGTERM and SIGKILL")
    @argument("targets", nargs="*", help="run names or ids")
    @line_magic
    def agent_stop(self, line: str) -> None:
        """Stop runs, whole process trees, verified; print one line per run.

            %agent_stop reviewer
            %agent_stop --all
        """
        args = _parse(self.agent_stop, line)
        grace = self._seconds("--grace", args.grace)
        if args.all == bool(args.targets):
            raise UsageError("name the runs to stop, or pass --all (not both)")
        if args.all:
            targets = [r for r in runs() if not r.done]
            if not targets:
                print("no live runs")
                return
        else:
            targets = []
            for t in args.targets:
                try:
                    targets.append(get(t))
                except RunstopError as e:
                    raise UsageError(str(e)) from None
        with ThreadPoolExecutor(max_workers=min(16, len(targets))) as pool:
            for result in pool.map(lambda r: r.stop(grace), targets):
                print(result)

    @line_magic
    def agent_ls(self, line: str = "") -> None:
        """Show a table of every run in this kernel: name, id, status, pid, elapsed, exit, lines, log."""
        if line.strip():
            raise UsageError("%agent_ls takes no arguments")
        table = RunTable(runs())
        if in_kernel(self.shell):
            from IPython.display import display

            display(table)
        else:
            print(table)

    # -- helpers ------------------------------------------------------------------------------

    def _expand_args(self, args: argparse.Namespace) -> None:
        """``{var}`` and ``$var`` from the user's namespace, as ``!cmd`` does, but *after* the
        options were parsed and word by word: a value never becomes more than one argument,
        so it cannot smuggle in an option (``n = "x --shell"``)."""
        for field in ("name", "cwd", "ray_address", "working_dir"):
            value = getattr(args, field)
            if isinstance(value, str):
                setattr(args, field, self._expand(value))
        args.env = [self._expand(item) for item in args.env]
        args.command = [self._expand(word, quote=args.shell) for word in args.command]

    def _expand(self, word: str, quote: bool = False) -> str:
        if "{" not in word and "$" not in word:
            return word
        formatter = _QuotingFormatter() if quote else DollarFormatter()
        try:
            ns = self.shell.user_ns if self.shell is not None else {}
            return str(formatter.vformat(word, args=[], kwargs=_Namespace(ns)))
        except Exception:
            return word  # as IPython does: a name it cannot resolve stays as written

    def _seconds(self, flag: str, value: float | None) -> float | None:
        try:
            return _spec.check_seconds(flag, value)
        except RunstopError as e:
            raise UsageError(str(e)) from None

    def _options(self, args: argparse.Namespace) -> dict[str, Any]:
        env: dict[str, str] = {}
        for item in args.env:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise UsageError(f"--env takes KEY=VALUE, got {item!r}")
            env[key] = value
        try:
            _spec.check_name(args.name)
        except RunstopError as e:
            raise UsageError(str(e)) from None
        opts = {"cwd": args.cwd, "env": env, "timeout": self._seconds("--timeout", args.timeout),
                "grace": self._seconds("--grace", args.grace), "shell": args.shell, "pty": args.pty,
                "stdin": args.stdin, "format": args.format, "max_cost": args.max_cost,
                "max_tokens": args.max_tokens, "idle": self._seconds("--idle", args.idle),
                "worktree": args.worktree, "containment": args.containment}
        opts.update(self._ray_options(args))
        return opts

    def _ray_options(self, args: argparse.Namespace) -> dict[str, Any]:
        """--backend ray and its options, as start() takes them; Ray options without it are an error."""
        given = [flag for flag, value in (("--ray-address", args.ray_address), ("--num-cpus", args.num_cpus),
                                          ("--num-gpus", args.num_gpus), ("--resources", args.resources),
                                          ("--working-dir", args.working_dir), ("--detach", args.detach)) if value]
        if args.backend != "ray":
            if given:
                raise UsageError(f"{', '.join(given)} need(s) --backend ray")
            return {}
        options: dict[str, Any] = {}
        for flag, value in (("--num-cpus", args.num_cpus), ("--num-gpus", args.num_gpus)):
            if value is not None:
                if not value >= 0 or value == float("inf"):
                    raise UsageError(f"{flag} takes a number of at least 0, not {value}")
                options[flag[2:].replace("-", "_")] = value
        resources: dict[str, float] = {}
        for item in args.resources:
            key, _, amount = item.partition("=")
            try:
                value = float(amount)
            except ValueError:
                value = -1.0  # no "=", or not a number
            if not key.strip() or not value >= 0:
                raise UsageError(f"--resources takes NAME=N with N at least 0, got {item!r}")
            resources[key.strip()] = value
        if resources:
            options["resources"] = resources
        if args.working_dir:
            options["runtime_env"] = {"working_dir": args.working_dir}
        if args.detach:
            options["detach"] = True
        return {"backend": "ray", "ray_address": args.ray_address, "ray_options": options}

    def _command(self, args: argparse.Namespace, line: str) -> list[str] | str:
        words = list(args.command)
        if words and words[0] == "--":
            words = words[1:]
        if not words:
            raise UsageError(f"missing command: {USAGE}")
        if args.shell:
            _, sep, raw = f" {line}".partition(" -- ")
            return self._expand(raw.strip(), quote=True) if sep else shlex.join(words)
        return words

    def _cell_jobs(self, cell: str, shell: bool) -> list[tuple[str | None, list[str] | str, str]]:
        jobs: list[tuple[str | None, list[str] | str, str]] = []
        names: set[str] = set()
        for number, raw in enumerate(cell.splitlines(), 1):
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            match = NAMED_LINE.match(text)
            name, body = (match.group(1), match.group(2)) if match else (None, text)
            if name:
                if name in names:
                    raise UsageError(f"line {number}: the name {name!r} is used twice in this cell")
                names.add(name)
            try:  # {var} expands after splitting, one word each (quoted for --shell), as on the magic's line
                command: list[str] | str = (self._expand(body, quote=True) if shell
                                            else [self._expand(w) for w in shlex.split(body)])
            except ValueError as e:
                raise UsageError(f"line {number}: {e} in {body!r}") from None
            key = f"name:{name}" if name else self._key(f"agent{len(jobs)}", command)
            jobs.append((name, command, key))
        if not jobs:
            raise UsageError("%%agent_run: the cell has no command lines (one agent per line)")
        return jobs

    def _plan(self, jobs: list[tuple[str | None, list[str] | str, str]], opts: dict[str, Any],
              restart: bool) -> list[Run | None]:
        """Check every job; find live runs to show again (or stop them, with --restart).

        Returns one slot per job: the live run to show, or None where one must start."""
        spec_opts = {k: v for k, v in opts.items() if k not in BACKEND_KEYS}
        try:
            for name, command, _ in jobs:
                _spec.build(command, name=name, here=opts.get("backend", "local") != "ray", **spec_opts)
            if opts.get("backend", "local") != "local":  # Ray installed, an address: before any view
                launcher_for(**{k: v for k, v in opts.items() if k in BACKEND_KEYS})
        except RunstopError as e:
            raise UsageError(str(e)) from None
        slots: list[Run | None] = []
        for name, _, key in jobs:
            existing = self._existing(name, key)
            if existing is not None and restart:
                result = existing.stop()
                if not result.stopped and result.reason != "already_terminal":
                    raise UsageError(f"--restart could not stop {existing.name!r}: {result}")
                existing = None
            elif existing is not None:
                print(f"{existing.name!r} is already running (pid {existing.pid}, "
                      f"{_age(existing)}); showing it. Use --restart to replace it.")
            slots.append(existing)
        return slots

    def _launch(self, jobs: list[tuple[str | None, list[str] | str, str]], slots: list[Run | None],
                opts: dict[str, Any], views: list[Any] | None) -> list[Run]:
        """Start the empty slots concurrently; bind each view as soon as its run starts.

        The views are already on screen (showing "starting"), so building them overlaps
        with the agents' start instead of adding to it."""
        todo = [i for i, slot in enumerate(slots) if slot is None]
        if views is not None:
            for view, slot in zip(views, slots, strict=True):
                if slot is not None:
                    view.bind(slot)

        def launch(i: int) -> Run:
            name, command, key = jobs[i]
            return start(command, name=name, key=key, **opts)

        errors = []
        with ThreadPoolExecutor(max_workers=max(1, min(16, len(todo)))) as pool:
            futures = {pool.submit(launch, i): i for i in todo}
            for fut in as_completed(futures):
                i = futures[fut]
                try:
                    slots[i] = run = fut.result()
                    if views is not None:
                        views[i].bind(run)
                except Exception as e:  # a view must never stay at "starting"
                    text = str(e) if isinstance(e, RunstopError) else f"{type(e).__name__}: {e}"
                    errors.append(text)
                    if views is not None:
                        views[i].failed_to_start(text)
        reg = registry()
        for i, slot in enumerate(slots):
            if slot is not None:
                reg.bind_key(jobs[i][2], slot)
        started = [r for r in slots if r is not None]
        if errors and not started:
            raise UsageError("; ".join(errors))
        for err in errors:
            print(f"error: {err}", file=sys.stderr)
        return started

    def _existing(self, name: str | None, key: str) -> Run | None:
        reg = registry()
        if name:
            try:
                named = reg.get(name)
            except RunstopError:
                return None
            return named if named.name == name and not named.done else None
        keyed = reg.by_key(key)
        return keyed if keyed is not None and not keyed.done else None

    def _key(self, position: str, command: list[str] | str) -> str:
        """Identify an unnamed agent: the frontend's cell id and its position in the cell,
        else (no cell id, e.g. terminal IPython) a hash of its command and position; the
        magic's options stay out of it, so adding --restart still finds the run."""
        parent: dict[str, Any] = {}
        kernel = getattr(self.shell, "kernel", None)
        if kernel is not None:
            try:
                parent = kernel.get_parent() or {}
            except Exception:
                parent = {}
        cell_id = (parent.get("metadata") or {}).get("cellId")
        if cell_id:
            return f"cell:{cell_id}:{position}"
        text = command if isinstance(command, str) else shlex.join(command)
        return f"cmd:{hashlib.sha1(text.encode()).hexdigest()[:16]}:{position}"

    def _next_line_index(self) -> int:
        """The position of this %agent_run among those of the same cell execution."""
        kernel = getattr(self.shell, "kernel", None)
        marker: object = getattr(self.shell, "execution_count", None)
        if kernel is not None:
            try:
                marker = (kernel.get_parent() or {}).get("header", {}).get("msg_id", marker)
            except Exception:
                pass
        if marker != self._exec_marker:
            self._exec_marker, self._line_index = marker, 0
        self._line_index += 1
        return self._line_index

    def _display(self, count: int, cols: int | None, single: bool) -> list[Any]:
        """Show ``count`` run widgets, not yet bound to runs; return them."""
        from IPython.display import display

        from ._grid import RunGrid
        from ._widget import RunWidget

        if single:
            view = RunWidget(None)
            display(view)
            return [view]
        grid = RunGrid([None] * count, cols)
        display(grid)
        return list(grid.children)

    def _wait(self, runs_: list[Run], stream: bool = False) -> None:
        """Foreground: block until every run ends; an interrupt stops them, in one line."""
        offsets: dict[tuple[str, str], int] = {}
        try:
            while not all(r.done for r in runs_):
                for run in runs_:
                    run.wait(0.1)
                    if stream:
                        _echo(run, offsets)
        except KeyboardInterrupt:
            results = [r.stop() for r in runs_ if not r.done]
            print("interrupted: " + "; ".join(str(r) for r in results))
            return
        if stream:
            for run in runs_:
                _echo(run, offsets)
                print(f"{run.name}: {run.status} (exit {run.returncode})")


class _Namespace(dict[str, Any]):
    """The user namespace for the formatter (a missing name raises, so the word stays)."""


class _QuotingFormatter(DollarFormatter):
    """For ``--shell``: a substituted value is quoted, so it stays one word of the shell text."""

    def format_field(self, value: Any, format_spec: str) -> str:
        return shlex.quote(str(super().format_field(value, format_spec)))


def _parse(magic: Any, line: str) -> argparse.Namespace:
    """Split the line like a POSIX shell, then apply the magic's declared arguments.

    IPython's own ``parse_argstring`` splits non-POSIX (quotes stay in the words), which
    would hand ``sh -c 'echo hi'`` to the agent with literal quotes. Bad input of any kind
    (unbalanced quotes, unknown flags) is a UsageError.
    """
    try:
        words = shlex.split(line, posix=True)
    except ValueError as e:
        raise UsageError(f"{e} in {line!r}") from None
    args: argparse.Namespace = magic.parser.parse_args(words)  # raises UsageError when bad
    return args


def _echo(run: Run, offsets: dict[tuple[str, str], int]) -> None:
    """Terminal IPython: copy new log bytes to this cell's stdout/stderr (main thread only)."""
    for stream, sink in (("stdout", sys.stdout), ("stderr", sys.stderr)):
        path = run.log_dir / f"{stream}.log"
        start_at = offsets.get((run.id, stream), 0)
        try:
            with open(path, "rb") as f:
                f.seek(start_at)
                data = f.read()
        except OSError:
            continue
        if data:
            offsets[(run.id, stream)] = start_at + len(data)
            sink.write(data.decode("utf-8", "replace"))
            sink.flush()


def _age(run: Run) -> str:
    secs = int(run.elapsed)
    return f"started {secs // 60}m{secs % 60:02d}s ago" if secs >= 60 else f"started {secs}s ago"


def load(ipython: Any) -> None:
    """%load_ext runstop_nb: register the magics; report orphaned agents from dead kernels;
    start this kernel's warden in the background, so the first run does not wait for it."""
    ipython.register_magics(AgentMagics)
    from ._janitor import load_report
    from ._local import start_warden_early

    message = load_report()
    if message:
        print(message)
    threading.Thread(target=start_warden_early, name="runstop-warden-start", daemon=True).start()


def unload(ipython: Any) -> None:
    """%unload_ext runstop_nb: remove the magics; runs keep running and stay reachable."""
    manager = ipython.magics_manager
    for kind, names in (("line", ("agent_run", "agent_stop", "agent_ls")), ("cell", ("agent_run",))):
        for name in names:
            manager.magics[kind].pop(name, None)
    manager.registry.pop("AgentMagics", None)
    live = [r for r in runs() if not r.done]
    if live:
        print(f"runstop_nb unloaded; {len(live)} run(s) keep running: "
              f"{', '.join(r.name for r in live)}. runstop_nb.stop_all() stops them.")
