"""cgroup v2 containment: one group per kernel, one group per run inside it.

A process cannot leave a cgroup by forking, ``setsid``, ``env -i`` or re-parenting, so
a run's group holds its whole tree whatever the tree does, and ``cgroup.kill`` (Linux
>= 5.14) kills every member at once, new forks included: 0.5 ms for a 1 ms fork chain,
measured here. ``populated 0`` in ``cgroup.events`` is the kernel's own statement that
nothing of the run is left (a zombie does not count). This is systemd's
``KillMode=control-group``, for one agent.

Where: the cgroup v2 hierarchy is found in /proc/self/mountinfo (here it is mounted at
/sys/fs/cgroup/unified beside v1 controllers; elsewhere at /sys/fs/cgroup), never assumed.
The kernel's group is made inside the kernel's own cgroup, which works both as root and
inside a systemd user service or scope delegated to the user (``Delegate=yes``, as
``user@.service`` is): moving the agent there needs write access to the kernel's own
cgroup, and nothing else. No controller is enabled, so the "no internal processes" rule
does not apply. Names: ``runstop_nb-<kernel pid>-<kernel start ticks>/<run id>``.

Only groups with these names are ever killed or removed; a run's group is removed once
its run has ended, and the kernel's when the kernel's warden exits.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from . import procfs

PREFIX = "runstop_nb-"
KERNEL_GROUP = re.compile(r"runstop_nb-(\d+)-(\d+)")


def mount_point() -> str | None:
    """Where the cgroup v2 hierarchy is mounted, from /proc/self/mountinfo; None if nowhere."""
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in lines:
        left, sep, right = line.partition(" - ")
        if sep and right.split(" ", 1)[0] == "cgroup2":
            return left.split(" ")[4].replace("\\040", " ")
    return None


@dataclass(frozen=True)
class Group:
    """One cgroup v2 directory."""

    path: str

    def _read(self, name: str) -> str:
        with open(os.path.join(self.path, name)) as f:
            return f.read()

    def _write(self, name: str, text: str) -> None:
        with open(os.path.join(self.path, name), "w") as f:
            f.write(text)

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    def exists(self) -> bool:
        return os.path.isdir(self.path)

    def members(self) -> list[int]:
        """Pids in this group and every group below it."""
        out: list[int] = []
        for folder, _dirs, _files in os.walk(self.path):
            try:
                with open(os.path.join(folder, "cgroup.procs"), "rb") as f:
                    out.extend(int(x) for x in f.read().split())
            except OSError:
                continue
        return out

    def populated(self) -> bool:
        """False once no process of the group (or below) is alive: the kernel's own word."""
        try:
            for line in self._read("cgroup.events").splitlines():
                key, _, value = line.partition(" ")
                if key == "populated":
                    return value.strip() == "1"
        except FileNotFoundError:
            return False  # removed: nothing can be in it
        return True

    def kill(self) -> bool:
        """SIGKILL every member, forks racing the kill included; False if unsupported or gone."""
        try:
            self._write("cgroup.kill", "1")
            return True
        except OSError:
            return False

    def join(self, pid: int) -> None:
        """Move ``pid`` (0: the caller) into this group; raises OSError if not allowed."""
        self._write("cgroup.procs", str(pid))

    def child(self, name: str) -> Group:
        return Group(os.path.join(self.path, name))

    def make(self) -> Group:
        os.mkdir(self.path, 0o755)
        return self

    def remove(self) -> bool:
        """Remove this (empty) group and any empty groups below it; False if still busy."""
        for folder, dirs, _files in os.walk(self.path, topdown=False):
            for d in dirs:
                try:
                    os.rmdir(os.path.join(folder, d))
                except FileNotFoundError:
                    pass
                except OSError:
                    return False
        try:
            os.rmdir(self.path)
        except FileNotFoundError:
            pass
        except OSError:
            return False
        return True

    def cpu_usec(self) -> int | None:
        """CPU time used by the group's members so far (microseconds), from cpu.stat."""
        try:
            for line in self._read("cpu.stat").splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    return int(value)
        except (OSError, ValueError):
            pass
        return None


def kernel_group_name(kernel_pid: int, kernel_start: int) -> str:
    return f"{PREFIX}{kernel_pid}-{kernel_start}"


def prepare(kernel_pid: int) -> Group | str:
    """Create this kernel's group where the machine allows it; else say why not (one line).

    The check is real: make the group, make and remove a probe group inside it, and see
    that ``cgroup.kill`` exists there (Linux >= 5.14). A kernel whose group exists already
    (a second call) gets it back.
    """
    mount = mount_point()
    if mount is None:
        return "no cgroup v2 hierarchy is mounted"
    own = procfs.cgroup_of(kernel_pid)
    if own is None:
        return "this process is not in a cgroup v2 group"
    st = procfs.stat(kernel_pid)
    if st is None:
        return "cannot read this process's start time"
    base = Group(os.path.normpath(os.path.join(mount, own.lstrip("/"))))
    if not os.access(os.path.join(base.path, "cgroup.procs"), os.W_OK):
        return f"cgroup {base.path} is not writable by this user (not root, no delegated scope)"
    group = base.child(kernel_group_name(kernel_pid, st.start))
    try:
        if not group.exists():
            group.make()
        probe = group.child(f"probe-{os.getpid()}").make()
        try:
            if not os.path.exists(os.path.join(probe.path, "cgroup.kill")):
                return "cgroup.kill is missing (Linux >= 5.14 is needed)"
        finally:
            probe.remove()
    except OSError as e:
        group.remove()
        return f"cannot create a cgroup in {base.path} ({e.strerror or e})"
    return group


def kernel_groups(base: str) -> list[tuple[Group, int, int]]:
    """The runstop_nb kernel groups directly in ``base``: (group, kernel pid, kernel start ticks)."""
    out = []
    try:
        names = os.listdir(base)
    except OSError:
        return []
    for name in names:
        match = KERNEL_GROUP.fullmatch(name)
        if match:
            out.append((Group(os.path.join(base, name)), int(match.group(1)), int(match.group(2))))
    return out
