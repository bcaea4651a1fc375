"""A real Jupyter kernel for the benchmarks, with every IOPub message recorded on arrival.

The recorder reads raw ZMQ frames on its own thread, so the kernel is never held back
by a slow client (a PUB socket drops what a subscriber does not read), and the byte
counts are what went over the wire: every frame of every message, signature included.
Only the small header frames are parsed; a content frame is only scanned for markers.
"""

from __future__ import annotations

import ast
import json
import os
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import zmq
from jupyter_client.manager import KernelManager

DELIM = b"<IDS|MSG>"
COMM_ID = re.compile(rb'"comm_id":\s*"([^"]+)"')
# Message types that are not widget or output traffic: the kernel's own bookkeeping.
NOT_TRAFFIC = frozenset({"status", "execute_input"})


@dataclass(frozen=True)
class Msg:
    t: float  # client perf_counter at arrival
    kind: str  # msg_type
    parent: str  # parent msg_id ("" for none)
    comm: str  # comm_id for comm messages
    size: int  # bytes on the wire, all frames
    outputs: bool  # a comm update that sends a view's output: a run view's ``tail`` (or an Output's ``outputs``)
    sent: float  # epoch seconds when the kernel made the message (its header's date)


class Recorder:
    """Drains the IOPub socket on a thread; keeps a small record of every message."""

    def __init__(self, sock: zmq.Socket[Any]) -> None:
        self._sock = sock
        self._lock = threading.Lock()
        self._msgs: list[Msg] = []
        self._markers: dict[bytes, float] = {}
        self._watch: set[bytes] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-iopub", daemon=True)
        self._thread.start()

    def watch(self, marker: bytes) -> None:
        """Note the arrival time of the first message whose content holds ``marker``."""
        with self._lock:
            self._watch.add(marker)

    def seen(self, marker: bytes) -> float | None:
        with self._lock:
            return self._markers.get(marker)

    def since(self, t0: float, t1: float | None = None) -> list[Msg]:
        with self._lock:
            return [m for m in self._msgs if m.t >= t0 and (t1 is None or m.t < t1)]

    def last_traffic(self) -> float:
        with self._lock:
            for m in reversed(self._msgs):
                if m.kind not in NOT_TRAFFIC:
                    return m.t
        return 0.0

    def quiet(self, for_s: float = 0.4, limit: float = 5.0) -> None:
        """Wait until no widget/output traffic has arrived for ``for_s`` seconds."""
        deadline = time.perf_counter() + limit
        while time.perf_counter() < deadline:
            if time.perf_counter() - self.last_traffic() >= for_s:
                return
            time.sleep(0.05)

    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(100):
                continue
            while True:
                try:
                    frames = self._sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self._record(time.perf_counter(), frames)

    def _record(self, t: float, frames: list[bytes]) -> None:
        try:
            i = frames.index(DELIM)
            header = json.loads(frames[i + 2])
            parent = json.loads(frames[i + 3])
        except (ValueError, IndexError):
            return
        kind = header.get("msg_type", "?")
        content = frames[i + 5] if len(frames) > i + 5 else b""
        comm = ""
        if kind.startswith("comm_"):
            match = COMM_ID.search(content)
            comm = match.group(1).decode() if match else ""
        msg = Msg(t, kind, parent.get("msg_id", ""), comm, sum(len(f) for f in frames),
                  kind == "comm_msg" and (b'"tail"' in content or b'"outputs"' in content), _epoch(header.get("date"), t))
        with self._lock:
            self._msgs.append(msg)
            for marker in self._watch:
                # execute_input echoes the cell's code, which is not output.
                if kind not in NOT_TRAFFIC and marker not in self._markers and marker in content:
                    self._markers[marker] = t

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)


def _epoch(date: object, fallback: float) -> float:
    """A header's ISO date as epoch seconds (``Z`` spelled out for Python 3.10)."""
    if not isinstance(date, str):
        return fallback
    try:
        return datetime.fromisoformat(date.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return fallback


class Kernel:
    """One kernel process started through jupyter_client; ``call`` runs code and returns a value."""

    def __init__(self, cwd: Path, env: dict[str, str], bench_dir: Path) -> None:
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(cwd=str(cwd), env=env)
        try:
            self.kc = self.km.client()
            self.kc.start_channels()
            self.kc.wait_for_ready(timeout=60)
        except BaseException:
            self.km.shutdown_kernel(now=True)
            raise
        self.iopub = Recorder(self.kc.iopub_channel.socket)
        self.proc = psutil.Process(self.pid)
        self.call(f"import sys, json; sys.path.insert(0, {str(bench_dir)!r}); import _inkernel as B")

    @property
    def pid(self) -> int:
        return int(self.km.provisioner.pid)  # type: ignore[union-attr]

    def execute(self, code: str, timeout: float = 120.0, want: str | None = None) -> tuple[dict[str, Any], float]:
        """Run ``code``; return the shell reply's content and the client-side round trip (s)."""
        expressions = {"r": f"json.dumps({want})"} if want else {}
        t0 = time.perf_counter()
        msg_id = self.kc.execute(code, store_history=False, user_expressions=expressions)
        deadline = t0 + timeout
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError(f"the kernel did not answer {code[:80]!r} within {timeout:.0f} s")
            reply = self.kc.get_shell_msg(timeout=left)
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply["content"], time.perf_counter() - t0

    def call(self, code: str, want: str | None = None, timeout: float = 120.0) -> Any:
        """Run ``code`` (it must succeed); return the JSON value of expression ``want``."""
        content, _ = self.execute(code, timeout, want)
        if content["status"] != "ok":
            tb = "\n".join(content.get("traceback", []))
            raise RuntimeError(f"kernel error in {code[:80]!r}: {content.get('ename')}: "
                               f"{content.get('evalue')}\n{tb}")
        if want is None:
            return None
        value = content["user_expressions"]["r"]
        if value["status"] != "ok":
            raise RuntimeError(f"{want}: {value.get('ename')}: {value.get('evalue')}")
        return json.loads(ast.literal_eval(value["data"]["text/plain"]))

    def rss(self) -> int:
        return int(self.proc.memory_info().rss)

    def cpu(self) -> float:
        """The kernel's CPU seconds, summed over its live threads, in nanosecond resolution.

        /proc/PID/task/TID/schedstat counts each thread's time on CPU in ns; psutil's
        cpu_times() counts 10 ms ticks, too coarse to tell 0.5 % from 1 % over a second.
        Falls back to cpu_times() where schedstat is missing.
        """
        total = 0
        try:
            tids = os.listdir(f"/proc/{self.pid}/task")
        except OSError:
            tids = []
        for tid in tids:
            try:
                with open(f"/proc/{self.pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
        if total:
            return total / 1e9
        t = self.proc.cpu_times()
        return float(t.user + t.system)

    def close(self) -> None:
        pid = self.pid
        try:
            try:
                self.call("import runstop_nb; runstop_nb.stop_all(grace=0.5)", timeout=30)
            except Exception:
                pass  # the kernel's guards stop every tree when the kernel dies anyway
            self.iopub.close()
            self.kc.stop_channels()
        finally:
            if self.km.is_alive():
                self.km.shutdown_kernel(now=True)
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass


@dataclass(frozen=True)
class Traffic:
    """Widget and output traffic over a span of time, as the kernel sent it on IOPub."""

    messages: int
    bytes: int
    output_updates: int  # comm updates that replace an Output widget's outputs
    max_message: int  # bytes, the largest single message
    max_updates_per_s: int  # output updates in the busiest 1 s window, per widget
    max_messages_per_s: int  # messages in the busiest 1 s window, all widgets together
    seconds: float

    @classmethod
    def of(cls, msgs: list[Msg], seconds: float) -> Traffic:
        msgs = [m for m in msgs if m.kind not in NOT_TRAFFIC]
        updates = [m for m in msgs if m.outputs]
        per_widget: dict[str, list[float]] = {}
        for m in updates:
            # Rates by the kernel's send time: transport jitter must not bunch frames up.
            per_widget.setdefault(m.comm, []).append(m.sent)
        return cls(
            messages=len(msgs),
            bytes=sum(m.size for m in msgs),
            output_updates=len(updates),
            max_message=max((m.size for m in msgs), default=0),
            max_updates_per_s=max((busiest_second(ts) for ts in per_widget.values()), default=0),
            max_messages_per_s=busiest_second([m.sent for m in msgs]),
            seconds=seconds,
        )

    def as_json(self) -> dict[str, float]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in self.__dict__.items()}


def busiest_second(times: list[float]) -> int:
    """The most events in any window of one second."""
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - 1.0:
            j += 1
        best = max(best, i - j + 1)
    return best


def kernel_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["RUNSTOP_NB_HOME"] = str(home)
    env.pop("PYTEST_CURRENT_TEST", None)
    return env
