"""A fake agent that writes numbered lines as fast as it can.

    python flood.py [--lines N] [--width W]

Each line is ``NNNNNNNNN <padding>``; a checker can verify the log is gap-free.
"""

from __future__ import annotations

import argparse
import sys


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--width", type=int, default=60)
    args = ap.parse_args()
    pad = "x" * max(0, args.width - 11)
    out = sys.stdout
    batch = []
    for i in range(args.lines):
        batch.append(f"{i:09d} {pad}\n")
        if len(batch) == 1000:
            out.write("".join(batch))
            batch.clear()
    out.write("".join(batch))
    out.flush()


if __name__ == "__main__":
    main()
