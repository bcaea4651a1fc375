"""A Ray run's keeper: stops the run's job when the kernel that started it dies.

A Ray job runs on a node, outside the kernel's warden, so the kernel's death reaches no
guard of it. The keeper is a small process on the kernel's machine, one per Ray run,
standard library only (``python -I -S``), in its own session: it holds a pidfd of the
kernel, and when the kernel exits it asks the cluster to stop the job through Ray's Jobs
REST API (``POST /api/jobs/<id>/stop``). Ray's SIGTERM then reaches the node's guard, which
runs the same ladder as for a Stop. The keeper also exits when the job ends by itself (it
asks the job's status every few seconds), or when the kernel releases the run.

    python -I -S keeper.py KERNEL_PID KERNEL_START ADDRESS JOB_ID
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time
import urllib.request

CHECK_EVERY = 3.0  # seconds between job status checks
STOP_TRIES = 5  # POST /stop attempts (the head may be busy), 1 s apart
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def _start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[19]) if fields[0] not in (b"Z", b"X") else None


def _request(url: str, method: str) -> dict[str, object] | None:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read() or b"{}")  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def keep(kernel_pid: int, kernel_start: int, address: str, job_id: str) -> int:
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # only the kernel's death, the job's end or SIGTERM end it
    base = address.rstrip("/") + "/api/jobs/" + job_id
    try:
        fd = os.pidfd_open(kernel_pid)
    except (OSError, AttributeError):
        fd = None
    if _start_time(kernel_pid) != kernel_start:  # gone before we could hold it
        fd = None
        dead = True
    else:
        dead = False
    while not dead:
        if fd is not None:
            ready, _, _ = select.select([fd], [], [], CHECK_EVERY)
            dead = bool(ready)
        else:
            time.sleep(min(CHECK_EVERY, 1.0))
            dead = _start_time(kernel_pid) != kernel_start
        if not dead:
            info = _request(base, "GET")
            if info is not None and info.get("status") in TERMINAL:
                return 0
    for _ in range(STOP_TRIES):
        if _request(base + "/stop", "POST") is not None:
            return 0
        time.sleep(1.0)
    return 1


if __name__ == "__main__":
    sys.exit(keep(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]))
