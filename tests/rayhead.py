"""The head's death, driven from inside a namespace and head of its own.

    scripts/test-ray.sh --run python tests/rayhead.py AGENT_CODE

tests/test_ray.py runs this (it must not kill the head its other tests use). It starts
AGENT_CODE as a Ray run, prints ``{"cookie": ...}`` once the agent runs, then SIGKILLs
the head's own processes (``ray start``, the GCS, the raylet, the dashboard and their
agents), but not Ray's workers: they find their raylet gone and exit by themselves, as on
a real head that dies. Then it waits for the run to end and prints what the run says.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import psutil

import runstop_nb


def head_processes(head: int) -> list[psutil.Process]:
    """The head and its descendants, minus Ray's workers (``ray::…``) and everything under them."""
    root = psutil.Process(head)
    found = [root]
    todo = [root]
    while todo:
        for child in todo.pop().children():
            try:
                if " ".join(child.cmdline()).startswith("ray::"):
                    continue
            except psutil.Error:
                continue
            found.append(child)
            todo.append(child)
    return found


def main() -> None:
    run = runstop_nb.start([sys.executable, "-c", sys.argv[1]], backend="ray", grace=0.5)
    deadline = time.monotonic() + 60
    while "ready" not in run.output():
        if time.monotonic() > deadline:
            sys.exit("the agent did not say ready within 60 s")
        time.sleep(0.1)
    print(json.dumps({"cookie": run.spec.cookie, "job": run.ray_job}), flush=True)
    killed = []
    for proc in head_processes(int(os.environ["RUNSTOP_NB_RAY_HEAD_PID"])):
        try:
            proc.send_signal(signal.SIGKILL)
            killed.append(proc.pid)
        except psutil.Error:
            pass
    print(json.dumps({"killed": killed, "at": time.time()}), flush=True)
    status = run.wait(90)
    stop = run.last_stop
    print(json.dumps({"status": status, "error": run.error, "done": run.done,
                      "stop": None if stop is None else {"reason": stop.reason, "stopped": stop.stopped,
                                                         "error": stop.error}}), flush=True)


if __name__ == "__main__":
    main()
