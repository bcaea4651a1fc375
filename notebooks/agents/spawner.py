"""A fake agent that spawns a tree: plain children, a setsid'd one, a double-forked daemon.

    python spawner.py [--children N]

Each descendant sleeps; the root prints a heartbeat. Only a whole-tree stop ends them all.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--children", type=int, default=3)
    args = ap.parse_args()
    kids = [subprocess.Popen(["sleep", "3600"]) for _ in range(args.children)]
    kids.append(subprocess.Popen(["sleep", "3600"], start_new_session=True))  # escapes the group
    if os.fork() == 0:  # double fork: the grandchild is orphaned at once
        if os.fork() == 0:
            os.setsid()
            time.sleep(3600)
        os._exit(0)
    print(f"spawned {len(kids) + 1} descendants: {[k.pid for k in kids]}", flush=True)
    n = 0
    while True:
        n += 1
        print(f"heartbeat {n}", flush=True)
        if n % 5 == 0:
            print(f"warning: still busy after {n} beats", file=sys.stderr, flush=True)
        time.sleep(0.5)


if __name__ == "__main__":
    main()
