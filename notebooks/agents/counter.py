"""A fake agent: numbered lines with ANSI colours, stderr notes, and a \r progress bar.

    python counter.py [--lines N] [--interval SECONDS] [--progress-every K]
"""

from __future__ import annotations

import argparse
import sys
import time

COLOURS = ["\x1b[32m", "\x1b[34m", "\x1b[35m", "\x1b[36m"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1000)
    ap.add_argument("--interval", type=float, default=0.2)
    ap.add_argument("--progress-every", type=int, default=10)
    args = ap.parse_args()
    for i in range(1, args.lines + 1):
        print(f"{COLOURS[i % 4]}line {i:05d}\x1b[0m working on step {i}", flush=True)
        if i % args.progress_every == 0:
            for pct in range(0, 101, 25):
                sys.stdout.write(f"\rprogress [{'#' * (pct // 10):<10}] {pct:3d}%")
                sys.stdout.flush()
                time.sleep(args.interval / 10)
            sys.stdout.write("\n")
            print(f"note: checkpoint {i}", file=sys.stderr, flush=True)
        time.sleep(args.interval)
    print("\x1b[1mdone\x1b[0m", flush=True)


if __name__ == "__main__":
    main()
