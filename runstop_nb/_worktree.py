"""One git worktree per agent run: create it, diff it against where it started, remove it.

Every run gets a new branch ``runstop/NAME-ID`` checked out in its own folder, so
agents can edit one repository side by side. Worktrees live outside the
repository (a sibling ``.<repo>.runstop-worktrees`` folder, or a caller-given
root) so they never show up as untracked files or duplicate sources in it.

Only the ``git`` command is used: argument lists, a timeout on every call, no
prompts, and ``-c`` options that switch off the user's hooks, pager and colour.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import tempfile
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from .errors import WorktreeError

__all__ = ["BRANCH_PREFIX", "GIT_LOCATION_VARS", "FileChange", "Worktree", "WorktreeError", "create", "diff",
           "diffstat", "is_dirty", "list_worktrees", "remove", "repo_root", "workdir_for"]

BRANCH_PREFIX = "runstop/"
META_FILE = "runstop.json"  # kept in the worktree's admin dir (.git/worktrees/X); git deletes it with X
QUICK = 30.0  # seconds for a git call that reads a little
SLOW = 600.0  # seconds for a checkout, a removal or a diff of a large tree

# Inherited variables that would point git (ours, or an agent's) at another repository or index.
GIT_LOCATION_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR", "GIT_PREFIX",
                     "GIT_NAMESPACE", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES")
_GIT = ("git", "-c", "core.hooksPath=/dev/null", "-c", "color.ui=false", "-c", "core.quotePath=false",
        "-c", "core.fsmonitor=false", "-c", "gc.auto=0", "-c", "maintenance.auto=false", "--no-pager")
_DIFF = ("--no-color", "--no-ext-diff", "--no-textconv", "-M", "--src-prefix=a/", "--dst-prefix=b/")
_STATUS = {"A": "added", "C": "added", "D": "deleted", "R": "renamed"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")



@dataclass(frozen=True)
class Worktree:
    """An agent's own checkout: its folder, branch, starting commit and home repository."""

    path: str  # absolute path of the worktree folder
    branch: str  # runstop/NAME-ID
    base: str  # full sha of the commit it was created from
    repo: str  # top-level folder of the checkout it was created from


@dataclass(frozen=True)
class FileChange:
    """One file's change since the base commit; counts are None for binary files."""

    path: str
    added: int | None
    removed: int | None
    status: str  # "added" | "modified" | "deleted" | "renamed" | "untracked"
    old_path: str | None = None  # the path before a rename


def _git(args: Sequence[str], cwd: str, *, index: str | None = None, stdin: bytes | None = None,
         timeout: float = QUICK, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run one git command in cwd (with another index file if given); raise WorktreeError if check fails."""
    full = {k: v for k, v in os.environ.items() if k not in GIT_LOCATION_VARS}
    full.update(GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0", LC_ALL="C")
    if index is not None:
        full["GIT_INDEX_FILE"] = index
    try:
        done = subprocess.run([*_GIT, *args], cwd=cwd, env=full, input=stdin, capture_output=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise WorktreeError(f"git {args[0]} took over {timeout:.0f} s in {cwd}; is its disk slow?") from None
    except (FileNotFoundError, NotADirectoryError):
        if not os.path.isdir(cwd):
            raise WorktreeError(f"{cwd} is not a folder (any more)") from None
        raise WorktreeError("git is not installed or not on PATH; install git or drop --worktree") from None
    if check and done.returncode != 0:
        raise WorktreeError(f"git {args[0]} failed in {cwd}: {_first_line(done.stderr)}")
    return done


def _first_line(stderr: bytes) -> str:
    """Return the first non-empty line of git's stderr, without its 'fatal: ' prefix."""
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[0].removeprefix("fatal: ").removeprefix("error: ") if lines else "no message"


def _out(done: subprocess.CompletedProcess[bytes]) -> str:
    """Decode a git command's stdout the way paths are decoded, without the final newline."""
    return os.fsdecode(done.stdout).rstrip("\n")


def repo_root(cwd: str) -> str:
    """Return the top-level folder of the git checkout that contains cwd."""
    return _locate(cwd)[0]


def _locate(cwd: str) -> tuple[str, str]:
    """Return the top-level folder of cwd's checkout and its repository's shared .git folder."""
    cwd = os.path.abspath(cwd)
    if not os.path.isdir(cwd):
        raise WorktreeError(f"{cwd} is not a folder; pass an existing working directory")
    done = _git(["rev-parse", "--show-toplevel", "--git-common-dir"], cwd, check=False)
    if done.returncode == 0:
        top, common = _out(done).rsplit("\n", 1)
        return top, os.path.normpath(os.path.join(cwd, common))
    probe = _git(["rev-parse", "--is-bare-repository", "--is-inside-git-dir"], cwd, check=False)
    if probe.returncode != 0:
        if b"not a git repository" in done.stderr:
            raise WorktreeError(f"{cwd} is not inside a git repository; drop --worktree or cd into a "
                                "repository")
        raise WorktreeError(f"git cannot use the repository at {cwd}: {_first_line(done.stderr)}")
    if _out(probe).split("\n")[0] == "true":
        raise WorktreeError(f"{cwd} is a bare repository, with no working tree; drop --worktree")
    raise WorktreeError(f"{cwd} is inside a .git folder, not a working tree; cd into the checkout")


def _clean(text: str, limit: int) -> str:
    """Return text cut down to ASCII letters, digits and '._-', safe in a git ref and a folder name."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"\.{2,}", ".", _UNSAFE.sub("-", text))
    text = re.sub(r"-{2,}", "-", text)[:limit].strip(".-_")
    return text[:-5] + "-lock" if text.endswith(".lock") else text


def _component(name: str, run_id: str) -> str:
    """Return the NAME-ID part shared by a run's branch and folder names."""
    return f"{_clean(name, 48) or 'agent'}-{_clean(run_id, 32) or 'run'}"


@contextmanager
def _repo_lock(common: str) -> Iterator[None]:
    """Hold one repository's worktree lock: while git adds a worktree, other git commands that read
    every worktree (add, list, remove, branch -D) can die on its half-written admin folder."""
    try:
        lock = open(os.path.join(common, "runstop-worktrees.lock"), "a", encoding="utf-8")  # noqa: SIM115
    except OSError as e:
        raise WorktreeError(f"cannot lock {common}: {e.strerror}; is the repository writable?") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield


def _ref_exists(top: str, ref: str) -> str | None:
    """Return the sha a ref points to, or None when it does not exist."""
    done = _git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], top, check=False)
    return _out(done) if done.returncode == 0 else None


def _admin_dir(path: str) -> str | None:
    """Return a linked worktree's admin folder (.git/worktrees/X), read from its .git file."""
    try:
        with open(os.path.join(path, ".git"), encoding="utf-8") as f:
            line = f.readline().strip()
    except OSError:
        return None
    return os.path.normpath(os.path.join(path, line[8:])) if line.startswith("gitdir: ") else None


def _write_meta(wt: Worktree) -> None:
    """Record the base commit and branch next to git's own bookkeeping for the worktree."""
    admin = _admin_dir(wt.path)
    if admin is None:
        raise WorktreeError(f"{wt.path} has no .git file after 'git worktree add'; is it writable?")
    with open(os.path.join(admin, META_FILE), "w", encoding="utf-8") as f:
        json.dump({"base": wt.base, "branch": wt.branch, "repo": wt.repo}, f)


def create(cwd: str, name: str, run_id: str, *, root: str | None = None) -> Worktree:
    """Check out the current HEAD of cwd's repository on a new branch runstop/NAME-ID in a new folder.

    The folder is ``root/NAME-ID`` when root is given, else beside the repository, in
    ``<repo-parent>/.<repo>.runstop-worktrees/NAME-ID``. A detached HEAD is fine (the branch
    starts at its commit). Nothing is left behind on failure.
    """
    top, common = _locate(cwd)
    base = _ref_exists(top, "HEAD")
    if base is None:
        raise WorktreeError(f"{top} has no commits yet; commit once, or drop --worktree")
    part = _component(name, run_id)
    branch = BRANCH_PREFIX + part
    sibling = os.path.join(os.path.dirname(top), f".{os.path.basename(top)}.runstop-worktrees")
    parent = os.path.abspath(root) if root is not None else sibling
    path = os.path.join(parent, part)
    with _repo_lock(common):
        if _ref_exists(top, f"refs/heads/{branch}") is not None:
            raise WorktreeError(f"branch {branch} already exists in {top}; delete it or use another run name")
        if os.path.lexists(path):
            raise WorktreeError(f"{path} already exists; remove it or pick another run name")
        made_parent = not os.path.isdir(parent)
        try:
            os.makedirs(parent, exist_ok=True)
            _git(["worktree", "add", "--quiet", "--no-track", "-b", branch, path, base], top, timeout=SLOW)
            wt = Worktree(path=os.path.realpath(path), branch=branch, base=base, repo=top)
            _write_meta(wt)
        except BaseException:
            _undo_create(top, path, branch, parent if made_parent else None)
            raise
    return wt


def _undo_create(top: str, path: str, branch: str, parent: str | None) -> None:
    """Remove what a failed create made: the worktree, its folder, its branch and a new parent folder."""
    _git(["worktree", "remove", "--force", "--force", path], top, timeout=SLOW, check=False)
    shutil.rmtree(path, ignore_errors=True)
    _git(["worktree", "prune"], top, check=False)
    _git(["branch", "-D", branch], top, check=False)
    if parent is not None:
        with suppress(OSError):
            os.rmdir(parent)


def workdir_for(wt: Worktree, cwd: str) -> str:
    """Return the folder in the worktree that matches cwd in the original checkout (made if untracked).

    An agent started in ``repo/sub`` runs in ``worktree/sub``; any cwd outside the checkout maps to its top.
    """
    rel = os.path.relpath(os.path.realpath(cwd), os.path.realpath(wt.repo))
    first = rel.split(os.sep)[0]
    if rel == "." or first in ("..", ".git") or os.path.isabs(rel):
        return wt.path
    target = os.path.join(wt.path, rel)
    os.makedirs(target, exist_ok=True)
    return target


@contextmanager
def _scratch_index(wt: Worktree) -> Iterator[tuple[str, set[str]]]:
    """Yield a throwaway copy of the worktree's index with untracked files marked intent-to-add,
    and the set of those untracked paths; the worktree's own index is never written."""
    if not os.path.isdir(wt.path):
        raise WorktreeError(f"worktree folder {wt.path} is gone; nothing to diff")
    admin = _admin_dir(wt.path) or os.path.join(wt.path, ".git")
    with tempfile.TemporaryDirectory(prefix="runstop-index-") as scratch:
        index = os.path.join(scratch, "index")
        with suppress(FileNotFoundError):  # no index yet: git starts empty, every file counts as untracked
            shutil.copyfile(os.path.join(admin, "index"), index)
        listed = _git(["ls-files", "--others", "--exclude-standard", "-z"], wt.path, index=index,
                      timeout=SLOW)
        # A trailing '/' marks a nested repository: not a file, nothing to diff.
        untracked = [p for p in os.fsdecode(listed.stdout).split("\0") if p and not p.endswith("/")]
        if untracked:
            paths = os.fsencode("\0".join(untracked))
            _git(["--literal-pathspecs", "add", "--intent-to-add", "--pathspec-from-file=-",
                  "--pathspec-file-nul"], wt.path, index=index, stdin=paths, timeout=SLOW)
        yield index, set(untracked)


def diff(wt: Worktree) -> str:
    """Return the unified diff from wt.base to the worktree's files, committed or not, untracked included."""
    with _scratch_index(wt) as (index, _):
        done = _git(["diff", *_DIFF, wt.base, "--"], wt.path, index=index, timeout=SLOW)
    return done.stdout.decode("utf-8", "replace")


def diffstat(wt: Worktree) -> list[FileChange]:
    """Return one FileChange per file that differs from wt.base, committed or not, untracked included."""
    with _scratch_index(wt) as (index, untracked):
        done = _git(["diff", *_DIFF, "--raw", "--numstat", "-z", wt.base, "--"], wt.path, index=index,
                    timeout=SLOW)
    tokens = iter(os.fsdecode(done.stdout).split("\0"))
    kinds: dict[str, tuple[str, str | None]] = {}
    counts: dict[str, tuple[int | None, int | None]] = {}
    for token in tokens:
        if token.startswith(":"):  # --raw: ":modes shas STATUS\0path[\0new path]"
            letter = token.split()[-1][0]
            old = next(tokens)
            new = next(tokens) if letter in "RC" else old
            kind = "untracked" if letter == "A" and new in untracked else _STATUS.get(letter, "modified")
            kinds[new] = (kind, old if letter == "R" else None)
        elif token:  # --numstat: "added\tremoved\tpath" or "added\tremoved\t\0old\0new"
            added, removed, path = token.split("\t", 2)
            if not path:
                next(tokens)
                path = next(tokens)
            counts[path] = (None, None) if added == "-" else (int(added), int(removed))
    return [FileChange(path, *counts.get(path, (None, None)), status=kind, old_path=old)
            for path, (kind, old) in kinds.items()]


def _dirty_paths(path: str) -> list[str]:
    """Return the modified, staged, deleted and untracked paths of the checkout at path."""
    done = _git(["status", "--porcelain", "-z", "--no-renames", "--untracked-files=normal"], path,
                timeout=SLOW)
    return [entry[3:] for entry in os.fsdecode(done.stdout).split("\0") if entry]


def is_dirty(wt: Worktree) -> bool:
    """Return True when the worktree has uncommitted changes or untracked files (False once it is gone)."""
    return os.path.isdir(wt.path) and bool(_dirty_paths(wt.path))


def remove(wt: Worktree, *, force: bool = False) -> None:
    """Delete the worktree's folder and its branch; refuse when that would lose work, unless force.

    Work is uncommitted or untracked files, or commits no other branch holds. Removing a
    worktree that is already gone (folder, registration or branch) is fine.
    """
    if not wt.branch.startswith(BRANCH_PREFIX):
        raise WorktreeError(f"{wt.branch} is not a runstop branch; refusing to delete it")
    if not os.path.isdir(wt.repo):
        if os.path.lexists(wt.path):
            raise WorktreeError(f"repository {wt.repo} is gone; delete {wt.path} by hand")
        return
    exists = os.path.isdir(wt.path)
    admin = _admin_dir(wt.path)
    linked = admin is not None and os.path.isdir(admin)  # a checkout git still knows
    tip = _ref_exists(wt.repo, f"refs/heads/{wt.branch}")
    if not force:
        dirty = _dirty_paths(wt.path) if linked else []
        if dirty:
            shown = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
            raise WorktreeError(f"worktree {wt.path} has uncommitted changes in {shown}; commit them, or "
                                "remove with force=True to discard them")
        ahead = "0"
        if tip and tip != wt.base:  # count the commits since base that no other branch, tag or remote holds
            others = [f"--exclude={wt.branch}", "--branches", "--tags", "--remotes", "--"]
            ahead = _out(_git(["rev-list", "--count", tip, "--not", *others], wt.repo))
        if ahead != "0":
            raise WorktreeError(f"branch {wt.branch} has {ahead} commit(s) on no other branch; merge them, "
                                "or remove with force=True to discard them")
        if exists and not linked:
            raise WorktreeError(f"{wt.path} is not a worktree of {wt.repo} any more; delete it by hand or "
                                "remove with force=True")
    with _repo_lock(_locate(wt.repo)[1]):
        if exists and not linked:
            shutil.rmtree(wt.path)
        else:  # when the folder is gone this drops git's stale record of it, if there is one
            extra = ["--force", "--force"] if force else []
            _git(["worktree", "remove", *extra, wt.path], wt.repo, timeout=SLOW, check=exists)
        if tip:
            _git(["branch", "-D", wt.branch], wt.repo)
    parent = os.path.dirname(wt.path)
    if parent.endswith(".runstop-worktrees"):
        with suppress(OSError):
            os.rmdir(parent)  # only when empty


def _read_meta(path: str) -> dict[str, str]:
    """Return what create() recorded for the worktree at path, or {} when there is nothing to read."""
    admin = _admin_dir(path)
    if admin is None:
        return {}
    try:
        with open(os.path.join(admin, META_FILE), encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in meta.items() if isinstance(v, str)} if isinstance(meta, dict) else {}


def list_worktrees(repo: str) -> list[Worktree]:
    """Return the runstop worktrees of the repository containing repo, including ones whose folder is gone.

    Each one's ``repo`` is the checkout it was created from, when known.
    """
    top, common = _locate(repo)
    with _repo_lock(common):
        listing = _out(_git(["worktree", "list", "--porcelain"], top))
    found: list[Worktree] = []
    for record in listing.split("\n\n"):
        fields = {key: value for key, _, value in (line.partition(" ") for line in record.split("\n"))}
        path = os.path.realpath(fields.get("worktree", ""))
        meta = _read_meta(path)  # {} when the folder is gone: the branch and its reflog still tell
        branch = meta.get("branch") or fields.get("branch", "").removeprefix("refs/heads/")
        if not fields.get("worktree") or not branch.startswith(BRANCH_PREFIX):
            continue
        base = meta.get("base")
        if not base:  # the branch was created at the oldest entry of its reflog
            log = _git(["reflog", "show", "--format=%H", f"refs/heads/{branch}", "--"], top, check=False)
            base = _out(log).split("\n")[-1] if log.returncode == 0 else fields.get("HEAD", "")
        origin = meta.get("repo", "")
        found.append(Worktree(path, branch, base, origin if os.path.isdir(origin) else top))
    return found
