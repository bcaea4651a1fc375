"""Start and stop latency on Ray next to the local backend and to Ray's own Jobs API, in one run.

    scripts/test-ray.sh --run .venv/bin/python benchmarks/ray.py [--samples 3]

Run it through scripts/test-ray.sh: it makes a network namespace of its own, starts a
local head there and sets ``RUNSTOP_NB_RAY_ADDRESS``. For each backend, per sample:

* start: ``start()`` returning (the agent runs), and the first output line in the run's log;
* stop: ``run.stop()`` of a tree with a TERM-ignoring child at grace 0.5 s, verified.

"ray's own" is the Jobs API alone on the same agent: ``submit_job`` until the first line
arrives through ``tail_job_logs``, and ``stop_job`` until the status is ``STOPPED`` (which
is not a verified stop: its TERM-ignorer or a setsid'd child may live on). Medians are
printed side by side, with ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# This file is named ray.py: its own folder must not shadow the ray package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

import runstop_nb  # noqa: E402  (after the path fix above)

PY = sys.executable
LINE = "import time; print('first', flush=True); time.sleep(300)"
TREE = ("import signal, subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
        "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)']); "
        "time.sleep(0.3); print('first', flush=True); time.sleep(300)")
GRACE = 0.5


def _wait_output(run: runstop_nb.Run, text: str, timeout: float = 60.0) -> float:
    deadline = time.monotonic() + timeout
    while text not in run.output():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {text!r} from {run.name} in {timeout} s")
        time.sleep(0.005)
    return time.monotonic()


def ours(backend: str) -> tuple[float, float, float]:
    """(start returns, first line, verified stop) in seconds."""
    t0 = time.monotonic()
    run = runstop_nb.start([PY, "-c", TREE], backend=backend, grace=GRACE)
    started = time.monotonic() - t0
    first = _wait_output(run, "first") - t0
    t1 = time.monotonic()
    result = run.stop()
    stop = time.monotonic() - t1
    if not result.stopped:
        raise RuntimeError(f"{backend}: not stopped: {result}")
    return started, first, stop


def rays_own(client: object) -> tuple[float, float, float]:
    """Ray's Jobs API alone: (submit returns, first line through the tail, STOPPED)."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    assert isinstance(client, JobSubmissionClient)
    t0 = time.monotonic()
    job = client.submit_job(entrypoint=f"exec {PY} -c \"{TREE}\"",
                            runtime_env={"env_vars": {"RAY_JOB_STOP_WAIT_TIME_S": "1"}})
    submitted = time.monotonic() - t0

    async def first_line() -> float:
        async for chunk in client.tail_job_logs(job):
            if "first" in chunk:
                return time.monotonic() - t0
        raise RuntimeError("the job ended without output")

    first = asyncio.run(first_line())
    t1 = time.monotonic()
    client.stop_job(job)
    while client.get_job_status(job) != JobStatus.STOPPED:
        time.sleep(0.01)
    return submitted, first, time.monotonic() - t1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=3)
    args = parser.parse_args()
    if not os.environ.get("RUNSTOP_NB_RAY_ADDRESS"):
        sys.exit("ray benchmark: no head; run it as: scripts/test-ray.sh --run .venv/bin/python benchmarks/ray.py")
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(os.environ["RUNSTOP_NB_RAY_ADDRESS"])
    ours("ray")  # warm-up: the head uploads _proc once and starts its job workers
    rays_own(client)
    samples: dict[str, list[tuple[float, float, float]]] = {"local": [], "ray": [], "ray's own": []}
    for _ in range(args.samples):  # interleaved, so load hits every column alike
        samples["local"].append(ours("local"))
        samples["ray"].append(ours("ray"))
        samples["ray's own"].append(rays_own(client))
    med = {k: [statistics.median(s[i] for s in v) for i in range(3)] for k, v in samples.items()}
    rows = ("start() returns", "first output line", f"stop (grace {GRACE} s)")
    print(f"median of {args.samples} samples, seconds   local    ray   ray's own   ray/local  ray/ray's own")
    for i, label in enumerate(rows):
        loc, ray, own = med["local"][i], med["ray"][i], med["ray's own"][i]
        print(f"{label:<34} {loc:6.2f} {ray:6.2f} {own:9.2f} {ray / loc:10.1f}x {ray / own:12.2f}x")
    print("ray's own stop is STOPPED as Ray reports it, not a verified stop of the whole tree.")


if __name__ == "__main__":
    main()
