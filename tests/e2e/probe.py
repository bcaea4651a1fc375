"""What the kernel behind a notebook page knows about its runs, asked out of band.

A second client connects to the kernel's connection file and sends a *silent* execute
with ``user_expressions``: it leaves no trace in the notebook (no output, no execution
count), so the page under test shows only what the user's cells produced.
"""

from __future__ import annotations

import ast
import queue
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from jupyter_client.blocking.client import BlockingKernelClient

from .server import COOKIE_VAR

OWNER_VAR = "RUNSTOP_NB_OWNER"

RUNS_EXPR = (
    "[(r.id, r.name, r.pid, r.spec.cookie, r.status, str(r.log_dir),"
    " getattr(r.last_stop, 'escalated', None)) for r in __import__('runstop_nb').runs()]"
)


@dataclass(frozen=True)
class RunInfo:
    id: str
    name: str
    pid: int | None
    cookie: str
    status: str
    log_dir: Path
    escalated: bool | None


class KernelProbe:
    """A silent side-channel client of one notebook's kernel."""

    def __init__(self, connection_file: Path) -> None:
        self.kc = BlockingKernelClient(connection_file=str(connection_file))
        self.kc.load_connection_file()
        self.kc.start_channels()

    def close(self) -> None:
        self.kc.stop_channels()

    def eval(self, expr: str, timeout: float = 30.0) -> object:
        """The value of ``repr(expr)`` in the kernel, parsed back as a Python literal."""
        msg_id = self.kc.execute("", silent=True, store_history=False,
                                 user_expressions={"v": f"repr({expr})"})
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"kernel did not answer {expr[:60]!r} within {timeout} s")
            try:
                msg = self.kc.get_shell_msg(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                break
        value = msg["content"]["user_expressions"]["v"]
        if value["status"] != "ok":
            raise AssertionError(f"{expr}: {value.get('ename')}: {value.get('evalue')}")
        return ast.literal_eval(ast.literal_eval(value["data"]["text/plain"]))

    def runs(self) -> list[RunInfo]:
        rows = self.eval(RUNS_EXPR)
        assert isinstance(rows, list)
        return [RunInfo(i, n, p, c, s, Path(d), e) for i, n, p, c, s, d, e in rows]



def tree_by_cookie(cookie: str) -> list[int]:
    """Live (non-zombie) pids whose environment holds this exact run cookie, found with psutil.

    Independent of runstop_nb's own /proc scan, so a bug there cannot hide a survivor.
    """
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get(COOKIE_VAR) == cookie:
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


def pids_owned_by(kernel_pid: int) -> set[int]:
    """Live pids of every agent tree (guards included) started by the kernel with this pid."""
    prefix = f"{kernel_pid}:"
    found = set()
    for proc in psutil.process_iter():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and proc.environ().get(OWNER_VAR, "").startswith(prefix):
                found.add(proc.pid)
        except psutil.Error:
            continue
    return found
