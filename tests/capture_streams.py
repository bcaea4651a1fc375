"""Capture what the real agent CLIs print, for the stream renderer's fixtures.

Runs each installed CLI (``scripts/clis.sh`` installs them) on each rehearsal script against
``runstop_nb.rehearsal.LoopbackModel``, and writes its standard output byte for byte to
``tests/fixtures/streams/<cli>-<script>.jsonl``, beside ``<cli>-<script>.meta.json`` (the
command line with scratch paths as placeholders, exit code, CLI version, the requests the
model answered). ``<cli>-tool_then_answer-resume`` continues the session of the first run.

    python tests/capture_streams.py                   # every CLI, every script, in a private netns
    python tests/capture_streams.py --cli codex --script api_error --no-netns

As root with ``unshare`` it re-runs itself in a network namespace that has only loopback, so
a capture cannot reach anything but 127.0.0.1 even by mistake.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the package importable from the repository
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil

from runstop_nb.rehearsal import KINDS, CliKind, LoggedRequest, LoopbackModel, cli_argv, cli_env, cli_path
from tests.helpers import created_at

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "streams"
CAPTURED_SCRIPTS = ("tool_then_answer", "api_error", "multi_turn", "slow_answer", "failing_tool")
PROMPT = "Rehearsal: please do the scripted task."
RESUME_PROMPT = "Rehearsal: and once more, please."
SCRATCH_ROOT = Path(tempfile.gettempdir()) / "runstop-capture"  # fixed, so paths in streams stay put


@dataclass
class CliRun:
    """One finished CLI run: what it was asked, printed and returned."""

    kind: CliKind
    argv: list[str]
    returncode: int
    stdout: bytes
    stderr: bytes
    leftovers: list[int] = field(default_factory=list)  # descendants still alive at the end (then killed)

    def events(self) -> list[dict[str, Any]]:
        """The JSON lines of stdout (non-JSON lines are skipped)."""
        found = []
        for line in self.stdout.decode(errors="replace").splitlines():
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                found.append(value)
        return found

    def session_id(self) -> str | None:
        """Claude's and Gemini's ``session_id``, or Codex's ``thread_id``."""
        for event in self.events():
            for key in ("session_id", "thread_id"):
                if isinstance(event.get(key), str):
                    return str(event[key])
        return None


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def run_cli(
    kind: CliKind,
    model: LoopbackModel,
    scratch: Path,
    prompt: str = PROMPT,
    *,
    resume: str | None = None,
    timeout: float = 120,
) -> CliRun:
    """Run one CLI to its end against ``model`` in ``scratch/work``; kill, by pid, whatever it left.

    The CLI gets its own session, so a stray signal from it cannot reach the caller; its
    descendants are tracked while it runs, because a tool's shell may start a session of its own.
    """
    work = scratch / "work"
    work.mkdir(parents=True, exist_ok=True)
    argv = cli_argv(kind, prompt, resume=resume)
    env = cli_env(kind, model, scratch)
    proc = subprocess.Popen(argv, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    seen: dict[int, float] = {}
    try:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            seen |= created_at(_descendants(proc.pid))  # a listed child may exit before it is asked
            proc.send_signal(signal.SIGKILL)
            out, err = proc.communicate()
            err += f"\n[capture] killed after {timeout} s\n".encode()
    finally:
        seen |= created_at(_descendants(proc.pid))  # a listed child may exit before it is asked
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        seen |= _strays(scratch)
        leftovers = _kill_exact(seen)
    return CliRun(kind, argv, proc.returncode, out, err, leftovers)


def _strays(scratch: Path) -> dict[int, float]:
    """Processes (pid: create time) working in ``scratch`` or with their HOME there: what a CLI
    orphaned (reparented away from it) is still found by this."""
    root = str(scratch)
    found: dict[int, float] = {}
    for p in psutil.process_iter(["pid", "cwd", "create_time"]):
        if p.pid == os.getpid():
            continue
        try:
            home = p.environ().get("HOME", "")
        except psutil.Error:
            home = ""
        cwd = p.info.get("cwd") or ""
        if cwd == root or cwd.startswith(root + "/") or home.startswith(root + "/"):
            found[p.pid] = p.info["create_time"]
    return found


def _kill_exact(pids: dict[int, float]) -> list[int]:
    """SIGKILL each pid that is still the same process (same create time); return those."""
    killed = []
    for pid, created in pids.items():
        try:
            p = psutil.Process(pid)
            if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                p.kill()
                killed.append(pid)
        except psutil.Error:
            pass
    return killed


def cli_version(kind: CliKind) -> str:
    """The version the CLI reports (``2.1.197``), or ``unknown``."""
    path = cli_path(kind)
    if path is None:
        return "unknown"
    with tempfile.TemporaryDirectory() as home:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "TMPDIR": home,
               "GEMINI_CLI_NO_RELAUNCH": "1", "DISABLE_AUTOUPDATER": "1"}
        try:
            out = subprocess.run([path, "--version"], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                                 text=True, timeout=60, start_new_session=True).stdout
        except subprocess.TimeoutExpired:
            return "unknown"
    words = [w for w in out.split() if w[:1].isdigit()]
    return words[0] if words else out.strip() or "unknown"


def _placeholders(argv: Sequence[str], scratch: Path) -> list[str]:
    """The command line with the binary's folder as {CLIS_DIR} and the scratch folder as {SCRATCH}."""
    head = "{CLIS_DIR}/" + Path(argv[0]).name if os.path.isabs(argv[0]) else argv[0]
    return [head] + [arg.replace(str(scratch), "{SCRATCH}") for arg in argv[1:]]


def _save(out_dir: Path, stem: str, run: CliRun, scratch: Path, meta: dict[str, Any],
          requests: Sequence[LoggedRequest]) -> list[Path]:
    jsonl, meta_file = out_dir / f"{stem}.jsonl", out_dir / f"{stem}.meta.json"
    jsonl.write_bytes(run.stdout)
    meta = {
        "cli": run.kind,
        **meta,
        "argv": _placeholders(run.argv, scratch),
        "cwd": "{SCRATCH}/work",
        "stdin": "/dev/null",
        "exit_code": run.returncode,
        "session_id": run.session_id(),
        "model_requests": [[r.method, r.path, r.status, r.script, r.step] for r in requests],
    }
    meta_file.write_text(json.dumps(meta, indent=2) + "\n")
    print(f"capture: {stem}: exit {run.returncode}, {len(run.events())} events", file=sys.stderr)
    return [jsonl, meta_file]


def capture(out_dir: Path, kinds: Sequence[CliKind] = KINDS, scripts: Sequence[str] = CAPTURED_SCRIPTS,
            *, resume: bool = True, scratch_root: Path = SCRATCH_ROOT) -> list[Path]:
    """Capture every CLI on every script (and a resume) into ``out_dir``; return the files written.

    CLIs that are not installed are skipped with a line on stderr.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for kind in kinds:
        if cli_path(kind) is None:
            print(f"capture: {kind} is not installed (scripts/clis.sh installs it); skipped", file=sys.stderr)
            continue
        version = cli_version(kind)
        for script in scripts:
            scratch = scratch_root / f"{kind}-{script}"
            shutil.rmtree(scratch, ignore_errors=True)
            stem = f"{kind}-{script}"
            with LoopbackModel(script=script) as model:
                run = run_cli(kind, model, scratch)
                base = {"cli_version": version, "script": script}
                written += _save(out_dir, stem, run, scratch, base, model.requests)
                session = run.session_id()
                if resume and script == "tool_then_answer" and session:
                    before = len(model.requests)
                    again = run_cli(kind, model, scratch, RESUME_PROMPT, resume=session)
                    extra = {"resume_of": stem, "same_session": again.session_id() == session}
                    written += _save(out_dir, f"{stem}-resume", again, scratch, base | extra,
                                     model.requests[before:])
            shutil.rmtree(scratch, ignore_errors=True)
    with contextlib.suppress(OSError):
        scratch_root.rmdir()  # only if empty
    return written


def _in_private_netns(args: list[str]) -> int | None:
    """Re-run this script inside a network namespace with only loopback; None if not possible."""
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        return None
    inner = " ".join(["ip link set lo up &&", "exec", *map(_quote, [sys.executable, __file__, *args, "--no-netns"])])
    return subprocess.run(["unshare", "-n", "--", "sh", "-c", inner]).returncode


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cli", action="append", choices=KINDS, help="a CLI to capture (default: all)")
    parser.add_argument("--script", action="append", help=f"a script (default: {', '.join(CAPTURED_SCRIPTS)})")
    parser.add_argument("--out", type=Path, default=FIXTURES, help="where to write (default: %(default)s)")
    parser.add_argument("--no-resume", action="store_true", help="skip the resume captures")
    parser.add_argument("--no-netns", action="store_true", help="run here, not in a private network namespace")
    args = parser.parse_args(argv)
    if not args.no_netns:
        code = _in_private_netns(sys.argv[1:] if argv is None else argv)
        if code is not None:
            return code
        print("capture: no private network namespace (needs root, unshare, ip); running here", file=sys.stderr)
    links = sorted(name for _, name in socket.if_nameindex())  # this network namespace's, unlike /sys
    print(f"capture: network interfaces here: {', '.join(links)}", file=sys.stderr)
    capture(args.out, args.cli or KINDS, args.script or CAPTURED_SCRIPTS, resume=not args.no_resume)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
