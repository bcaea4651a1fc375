"""A real IPython kernel for tests, driven through jupyter_client."""

from __future__ import annotations

import ast
import os
import queue
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from jupyter_client.manager import KernelManager


@dataclass
class Reply:
    status: str
    stdout: str = ""
    stderr: str = ""
    error: str = ""  # "ename: evalue" when status is "error"
    traceback: str = ""
    data: list[dict[str, Any]] = field(default_factory=list)  # display_data / execute_result
    comm_msgs: list[dict[str, Any]] = field(default_factory=list)  # iopub comm_open/comm_msg
    user_expressions: dict[str, Any] = field(default_factory=dict)


class Kernel:
    """One kernel process. ``run(code)`` executes and collects its iopub output."""

    def __init__(self, cwd: Path, env: dict[str, str] | None = None) -> None:
        self.km = KernelManager(kernel_name="python3")
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env.pop("PYTEST_CURRENT_TEST", None)
        self.km.start_kernel(cwd=str(cwd), env=full_env)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    @property
    def pid(self) -> int:
        provisioner = self.km.provisioner
        assert provisioner is not None
        return int(provisioner.pid)  # type: ignore[attr-defined]

    def run(self, code: str, timeout: float = 60, silent: bool = False,
            expressions: dict[str, str] | None = None, stop_on_error: bool = True) -> Reply:
        msg_id = self.kc.execute(code, silent=silent, store_history=not silent,
                                 user_expressions=expressions or {}, stop_on_error=stop_on_error)
        reply = Reply(status="?")
        deadline = time.monotonic() + timeout
        idle = False
        while not idle:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"kernel did not finish {code[:60]!r} within {timeout} s")
            try:
                msg = self.kc.get_iopub_msg(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                if msg["msg_type"] in ("comm_msg", "comm_open"):
                    reply.comm_msgs.append(msg)  # widget traffic from background threads
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                if content["name"] == "stdout":
                    reply.stdout += content["text"]
                else:
                    reply.stderr += content["text"]
            elif kind in ("display_data", "execute_result", "update_display_data"):
                reply.data.append(content["data"])
            elif kind == "error":
                reply.error = f"{content['ename']}: {content['evalue']}"
                reply.traceback = "\n".join(content["traceback"])
            elif kind in ("comm_msg", "comm_open"):
                reply.comm_msgs.append(msg)
            elif kind == "status" and content["execution_state"] == "idle":
                idle = True
        while True:  # skip replies to requests whose callers never read them
            shell = self.kc.get_shell_msg(timeout=max(1.0, deadline - time.monotonic()))
            if shell["parent_header"].get("msg_id") == msg_id:
                break
        reply.status = shell["content"]["status"]
        reply.user_expressions = shell["content"].get("user_expressions", {})
        return reply

    def ok(self, code: str, timeout: float = 60) -> Reply:
        """Run code that must succeed; fail with the kernel's traceback otherwise."""
        reply = self.run(code, timeout=timeout)
        if reply.status != "ok":
            raise AssertionError(f"kernel error running {code!r}: {reply.error}\n{reply.traceback}")
        return reply

    def eval(self, expr: str, timeout: float = 30) -> Any:
        """The value of a Python literal expression evaluated in the kernel."""
        reply = self.run("", silent=True, expressions={"v": f"repr({expr})"}, timeout=timeout)
        if "v" not in reply.user_expressions:
            raise AssertionError(f"{expr}: the kernel replied {reply.status!r} without a value")
        value = reply.user_expressions["v"]
        if value["status"] != "ok":
            raise AssertionError(f"{expr}: {value.get('ename')}: {value.get('evalue')}")
        return ast.literal_eval(ast.literal_eval(value["data"]["text/plain"]))

    def close(self) -> None:
        try:
            self.kc.stop_channels()
        finally:
            if self.km.is_alive():
                self.km.shutdown_kernel(now=True)


@contextmanager
def kernel(cwd: Path, env: dict[str, str] | None = None) -> Iterator[Kernel]:
    """A kernel that is shut down (now=True) and whose process is gone afterwards."""
    k = Kernel(cwd, env)
    pid = k.pid
    try:
        yield k
    finally:
        k.close()
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            pass


def runstop_kernel(home: Path, setup: str) -> Iterator[Kernel]:
    """A kernel in notebooks/ (so agents/… paths work) with its own runs home; on exit every
    run it started is stopped, and anything still carrying their cookies is killed by pid."""
    from .helpers import AGENTS, cookie_alive, kill_pids

    with kernel(AGENTS.parent, {"RUNSTOP_NB_HOME": str(home)}) as k:
        k.ok(setup)
        try:
            yield k
        finally:
            cookies = k.eval("[r.spec.cookie for r in __import__('runstop_nb').runs()]")
            k.run("__import__('runstop_nb').stop_all(grace=0.5)")
            for cookie in cookies:
                kill_pids(cookie_alive(cookie))
