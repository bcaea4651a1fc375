"""Per-run git worktrees, against real repositories and the real git command."""

from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runstop_nb import _worktree
from runstop_nb._worktree import FileChange, Worktree, WorktreeError

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")

GIT_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Test Committer",
    "GIT_COMMITTER_EMAIL": "committer@example.com",
}


@pytest.fixture(autouse=True)
def isolated_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No global or system git config, and no repository discovery above tmp_path."""
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for var in _worktree.GIT_LOCATION_VARS:
        monkeypatch.delenv(var, raising=False)


def git(cwd: Path | str, *args: str) -> str:
    """Run git in cwd for a test's own setup and checks; return stdout."""
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with one commit: shared.txt, doomed.txt and sub/dir/keep.txt."""
    top = tmp_path / "proj"
    (top / "sub" / "dir").mkdir(parents=True)
    (top / "shared.txt").write_text("one\ntwo\nthree\n")
    (top / "doomed.txt").write_text("soon gone\n")
    (top / "sub" / "dir" / "keep.txt").write_text("keep\n")
    git(tmp_path, "init", "-q", "-b", "main", str(top))
    git(top, "add", ".")
    git(top, "commit", "-q", "-m", "initial")
    return Path(os.path.realpath(top))


def head(cwd: Path | str) -> str:
    return git(cwd, "rev-parse", "HEAD").strip()


def branches(repo: Path) -> list[str]:
    return git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/").split()


def worktree_paths(repo: Path) -> list[str]:
    return [line[9:] for line in git(repo, "worktree", "list", "--porcelain").splitlines()
            if line.startswith("worktree ")]


def index_state(wt: Worktree) -> tuple[bytes, int, str]:
    """The worktree's index bytes, its mtime and what it stages: all must survive diff()."""
    index = Path(wt.path, git(wt.path, "rev-parse", "--git-path", "index").strip())
    return index.read_bytes(), index.stat().st_mtime_ns, git(wt.path, "diff", "--cached", "--name-status")


def test_create_checks_out_head_on_a_new_branch_beside_the_repo(repo: Path) -> None:
    wt = _worktree.create(str(repo), "alpha", "abc123")
    assert wt.branch == "runstop/alpha-abc123"
    assert wt.base == head(repo)
    assert wt.repo == str(repo)
    assert wt.path == str(repo.parent / ".proj.runstop-worktrees" / "alpha-abc123")
    assert git(wt.path, "symbolic-ref", "--short", "HEAD").strip() == wt.branch
    assert (Path(wt.path) / "shared.txt").read_text() == "one\ntwo\nthree\n"
    assert git(repo, "symbolic-ref", "--short", "HEAD").strip() == "main"
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert _worktree.list_worktrees(str(repo)) == [wt]
    assert not _worktree.is_dirty(wt)
    assert _worktree.diff(wt) == "" and _worktree.diffstat(wt) == []


def test_root_puts_the_worktree_under_the_callers_folder(repo: Path, tmp_path: Path) -> None:
    root = tmp_path / "home" / "worktrees"
    wt = _worktree.create(str(repo), "alpha", "r1", root=str(root))
    assert wt.path == str(root / "alpha-r1")
    _worktree.remove(wt)
    assert root.is_dir() and not (root / "alpha-r1").exists()


def test_three_agents_edit_one_repo_without_trampling(repo: Path) -> None:
    a, b, c = (_worktree.create(str(repo), name, "id1") for name in ("adder", "deleter", "committer"))
    Path(a.path, "shared.txt").write_text("one\ntwo (by a)\nthree\n")
    Path(a.path, "fresh").mkdir()
    Path(a.path, "fresh", "new.txt").write_text("brand\nnew\n")
    Path(b.path, "shared.txt").write_text("zero\none\ntwo\nthree\n")
    Path(b.path, "doomed.txt").unlink()
    Path(c.path, "shared.txt").write_text("one\nthree\n")
    git(c.path, "commit", "-q", "-am", "c drops two")
    git(a.path, "add", "shared.txt")  # a staged change: diff() must leave it staged

    assert _worktree.diffstat(a) == [
        FileChange("fresh/new.txt", 2, 0, "untracked"), FileChange("shared.txt", 1, 1, "modified")]
    assert _worktree.diffstat(b) == [
        FileChange("doomed.txt", 0, 1, "deleted"), FileChange("shared.txt", 1, 0, "modified")]
    assert _worktree.diffstat(c) == [FileChange("shared.txt", 0, 1, "modified")]

    before = {wt.branch: index_state(wt) for wt in (a, b, c)}
    da, db, dc = (_worktree.diff(wt) for wt in (a, b, c))
    assert "+two (by a)" in da and "+++ b/fresh/new.txt" in da and "+brand" in da
    assert "+zero" not in da and "doomed" not in da
    assert "+zero" in db and "deleted file mode" in db and "--- a/doomed.txt" in db
    assert "(by a)" not in db and "new.txt" not in db
    assert "-two" in dc and "+zero" not in dc and "(by a)" not in dc
    assert all(_worktree.is_dirty(wt) for wt in (a, b))
    assert not _worktree.is_dirty(c)  # committed, so clean, yet its diff still shows the change
    assert {wt.branch: index_state(wt) for wt in (a, b, c)} == before
    assert "?? fresh/" in git(a.path, "status", "--porcelain")  # still untracked, not intent-to-add

    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert (repo / "shared.txt").read_text() == "one\ntwo\nthree\n"
    assert sorted(_worktree.list_worktrees(str(repo)), key=lambda w: w.branch) == [a, c, b]


def test_diffstat_reports_renames_and_binary_files(repo: Path) -> None:
    wt = _worktree.create(str(repo), "mover", "1")
    git(wt.path, "mv", "doomed.txt", "moved.txt")
    Path(wt.path, "sub", "dir", "keep.txt").rename(Path(wt.path, "kept.txt"))  # untracked rename target
    Path(wt.path, "blob.bin").write_bytes(b"\x00\x01\x02binary")
    changes = {c.path: c for c in _worktree.diffstat(wt)}
    assert changes["moved.txt"] == FileChange("moved.txt", 0, 0, "renamed", old_path="doomed.txt")
    assert changes["kept.txt"] == FileChange("kept.txt", 0, 0, "renamed", old_path="sub/dir/keep.txt")
    assert changes["blob.bin"] == FileChange("blob.bin", None, None, "untracked")
    assert "Binary files /dev/null and b/blob.bin differ" in _worktree.diff(wt)


def test_a_subfolder_cwd_maps_to_the_same_subfolder(repo: Path, tmp_path: Path) -> None:
    wt = _worktree.create(str(repo / "sub" / "dir"), "deep", "1")
    assert wt.repo == str(repo)
    assert _worktree.workdir_for(wt, str(repo / "sub" / "dir")) == os.path.join(wt.path, "sub", "dir")
    assert _worktree.workdir_for(wt, str(repo)) == wt.path
    assert _worktree.workdir_for(wt, str(tmp_path)) == wt.path
    (repo / "scratch").mkdir()  # untracked, so absent from the worktree: made on demand
    assert Path(_worktree.workdir_for(wt, str(repo / "scratch"))).is_dir()
    link = tmp_path / "link"
    link.symlink_to(repo / "sub")
    assert _worktree.workdir_for(wt, str(link)) == os.path.join(wt.path, "sub")


def test_outside_a_repository_is_a_one_line_error(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(WorktreeError) as err:
        _worktree.create(str(plain), "a", "1")
    message = str(err.value)
    assert message == f"{plain} is not inside a git repository; drop --worktree or cd into a repository"
    with pytest.raises(WorktreeError, match="is not a folder"):
        _worktree.repo_root(str(tmp_path / "missing"))


def test_a_repository_without_commits_is_refused(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "empty")
    with pytest.raises(WorktreeError, match="has no commits yet; commit once, or drop --worktree") as err:
        _worktree.create(str(tmp_path / "empty"), "a", "1")
    assert "\n" not in str(err.value)
    assert not (tmp_path / ".empty.runstop-worktrees").exists()


def test_a_bare_repository_and_a_git_folder_are_refused(repo: Path, tmp_path: Path) -> None:
    git(tmp_path, "clone", "-q", "--bare", str(repo), "bare.git")
    with pytest.raises(WorktreeError, match="is a bare repository, with no working tree; drop --worktree"):
        _worktree.create(str(tmp_path / "bare.git"), "a", "1")
    with pytest.raises(WorktreeError, match=r"inside a \.git folder"):
        _worktree.repo_root(str(repo / ".git"))


def test_a_detached_head_is_fine(repo: Path) -> None:
    first = head(repo)
    (repo / "shared.txt").write_text("later\n")
    git(repo, "commit", "-q", "-am", "later")
    git(repo, "checkout", "-q", "--detach", first)
    wt = _worktree.create(str(repo), "detached", "1")
    assert wt.base == first == head(wt.path)
    assert (Path(wt.path) / "shared.txt").read_text() == "one\ntwo\nthree\n"


def test_remove_refuses_a_dirty_worktree_until_forced(repo: Path) -> None:
    wt = _worktree.create(str(repo), "dirty", "1")
    Path(wt.path, "shared.txt").write_text("changed\n")
    Path(wt.path, "notes.md").write_text("untracked\n")
    with pytest.raises(WorktreeError) as err:
        _worktree.remove(wt)
    message = str(err.value)
    assert "shared.txt" in message and "notes.md" in message and "force=True" in message
    assert "\n" not in message and Path(wt.path).is_dir() and wt.branch in branches(repo)

    _worktree.remove(wt, force=True)
    assert not Path(wt.path).exists() and not Path(wt.path).parent.exists()
    assert branches(repo) == ["main"] and worktree_paths(repo) == [str(repo)]
    _worktree.remove(wt)  # twice is fine
    _worktree.remove(wt, force=True)
    assert _worktree.list_worktrees(str(repo)) == [] and not _worktree.is_dirty(wt)


def test_remove_keeps_commits_no_other_branch_holds(repo: Path) -> None:
    wt = _worktree.create(str(repo), "worker", "1")
    Path(wt.path, "shared.txt").write_text("done\n")
    git(wt.path, "commit", "-q", "-am", "work")
    with pytest.raises(WorktreeError, match=r"has 1 commit\(s\) on no other branch.*force=True"):
        _worktree.remove(wt)
    git(repo, "merge", "-q", "--ff-only", wt.branch)
    _worktree.remove(wt)  # merged: nothing is lost
    assert branches(repo) == ["main"] and (repo / "shared.txt").read_text() == "done\n"


def test_remove_after_the_folder_was_deleted_by_hand(repo: Path) -> None:
    wt = _worktree.create(str(repo), "gone", "1")
    shutil.rmtree(wt.path)
    assert [w.branch for w in _worktree.list_worktrees(str(repo))] == [wt.branch]  # still listed, prunable
    with pytest.raises(WorktreeError, match="is gone"):
        _worktree.diff(wt)
    _worktree.remove(wt)
    assert branches(repo) == ["main"] and worktree_paths(repo) == [str(repo)]


def test_remove_refuses_a_folder_git_no_longer_knows(repo: Path, tmp_path: Path) -> None:
    wt = _worktree.create(str(repo), "stray", "1")
    git(repo, "worktree", "remove", "--force", wt.path)
    Path(wt.path).mkdir()
    Path(wt.path, "precious.txt").write_text("mine\n")
    with pytest.raises(WorktreeError, match=r"is not a worktree of .* any more"):
        _worktree.remove(wt)
    assert Path(wt.path, "precious.txt").exists() and wt.branch in branches(repo)
    _worktree.remove(wt, force=True)
    assert not Path(wt.path).exists() and branches(repo) == ["main"]

    gone = Worktree(str(tmp_path / "no-tree"), "runstop/x-1", "0" * 40, str(tmp_path / "no-repo"))
    _worktree.remove(gone)  # repository and worktree both gone: nothing to do


def test_a_failure_after_worktree_add_leaves_nothing(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(wt: Worktree) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(_worktree, "_write_meta", broken)
    with pytest.raises(OSError, match="disk full"):
        _worktree.create(str(repo), "half", "1")
    assert branches(repo) == ["main"] and worktree_paths(repo) == [str(repo)]
    assert not (repo.parent / ".proj.runstop-worktrees").exists()
    assert not (repo / ".git" / "worktrees").exists() or not any((repo / ".git" / "worktrees").iterdir())


def test_an_existing_branch_or_folder_is_left_alone(repo: Path) -> None:
    git(repo, "branch", "runstop/taken-1")
    before = head(repo)
    with pytest.raises(WorktreeError, match="branch runstop/taken-1 already exists"):
        _worktree.create(str(repo), "taken", "1")
    assert git(repo, "rev-parse", "runstop/taken-1").strip() == before
    assert worktree_paths(repo) == [str(repo)] and not (repo.parent / ".proj.runstop-worktrees").exists()

    folder = repo.parent / ".proj.runstop-worktrees" / "busy-1"
    folder.mkdir(parents=True)
    (folder / "mine.txt").write_text("not yours\n")
    with pytest.raises(WorktreeError, match="already exists"):
        _worktree.create(str(repo), "busy", "1")
    assert (folder / "mine.txt").read_text() == "not yours\n"
    assert sorted(branches(repo)) == ["main", "runstop/taken-1"]
    with pytest.raises(WorktreeError, match="not a runstop branch"):
        _worktree.remove(Worktree(str(repo), "main", before, str(repo)), force=True)


def ref_ok(repo: Path, branch: str) -> bool:
    done = subprocess.run(["git", "check-ref-format", "--branch", branch], cwd=repo, capture_output=True,
                          timeout=30, check=False)
    return done.returncode == 0


@pytest.mark.parametrize("name", [
    "héllo wörld", "../../etc/passwd", "a..b", "x.lock", "-dash", ".hidden", "@", "@{u}", "a/b\\c",
    "", "🚀 launch", "*?[~^:", "trailing.", "tab\there", "long" * 40,
])
def test_odd_names_become_safe_branches_and_folders(repo: Path, name: str) -> None:
    wt = _worktree.create(str(repo), name, "Run.Id/7")
    assert ref_ok(repo, wt.branch), wt.branch
    assert Path(wt.path).parent == repo.parent / ".proj.runstop-worktrees"
    assert wt.branch == "runstop/" + Path(wt.path).name
    _worktree.remove(wt)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(max_size=40), run_id=st.text(max_size=12))
def test_any_name_gives_a_valid_ref(repo: Path, name: str, run_id: str) -> None:
    part = _worktree._component(name, run_id)
    assert "/" not in part and part not in (".", "..")
    assert ref_ok(repo, "runstop/" + part), part


def test_base_survives_commits_and_a_lost_note(repo: Path) -> None:
    wt = _worktree.create(str(repo), "noted", "1")
    Path(wt.path, "shared.txt").write_text("changed\n")
    git(wt.path, "commit", "-q", "-am", "one")
    assert _worktree.list_worktrees(str(wt.path)) == [wt]  # from inside the worktree too
    admin = Path(wt.path, git(wt.path, "rev-parse", "--git-dir").strip())
    (admin / _worktree.META_FILE).unlink()
    assert _worktree.list_worktrees(str(repo)) == [wt]  # from the branch's reflog


def test_concurrent_creates_all_succeed(repo: Path) -> None:
    with ThreadPoolExecutor(6) as pool:
        made = list(pool.map(lambda i: _worktree.create(str(repo), "many", str(i)), range(6)))
    assert len({wt.path for wt in made}) == 6
    assert sorted(_worktree.list_worktrees(str(repo)), key=lambda w: w.branch) == made
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(_worktree.remove, made))
    assert branches(repo) == ["main"] and worktree_paths(repo) == [str(repo)]


def test_the_users_git_config_and_environment_cannot_interfere(repo: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "hook-ran"
    hook = repo / ".git" / "hooks" / "post-checkout"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    hook.chmod(0o755)
    for key, value in [("color.ui", "always"), ("diff.noprefix", "true"), ("diff.external", "false"),
                       ("status.showUntrackedFiles", "no"), ("core.pager", "false"),
                       ("diff.renames", "false"), ("core.fsmonitor", "true")]:
        git(repo, "config", key, value)
    other = tmp_path / "other"
    git(tmp_path, "init", "-q", str(other))
    hostile = {"GIT_DIR": str(other / ".git"), "GIT_INDEX_FILE": str(tmp_path / "elsewhere.index"),
               "GIT_WORK_TREE": str(other)}
    for key, value in hostile.items():
        monkeypatch.setenv(key, value)

    wt = _worktree.create(str(repo), "hostile", "1")
    Path(wt.path, "new.txt").write_text("x\n")
    with monkeypatch.context() as calm:
        for key in hostile:
            calm.delenv(key)
        git(wt.path, "mv", "doomed.txt", "renamed.txt")
    assert not marker.exists()
    assert "\x1b[" not in _worktree.diff(wt) and "+++ b/new.txt" in _worktree.diff(wt)
    assert {c.status for c in _worktree.diffstat(wt)} == {"untracked", "renamed"}
    assert _worktree.is_dirty(wt)
    _worktree.remove(wt, force=True)
    assert _worktree.list_worktrees(str(repo)) == [] and not (tmp_path / "elsewhere.index").exists()


def test_git_missing_is_a_clear_error(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(WorktreeError, match="git is not installed or not on PATH"):
        _worktree.create(str(repo), "a", "1")
