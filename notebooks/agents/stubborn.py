"""A fake agent that ignores SIGTERM, so only SIGKILL (after the grace) ends it.

    python stubborn.py
"""

from __future__ import annotations

import signal
import time


def main() -> None:
    signal.signal(signal.SIGTERM, lambda signum, frame: print("ignoring SIGTERM", flush=True))
    n = 0
    while True:
        n += 1
        print(f"still here {n}", flush=True)
        time.sleep(0.3)


if __name__ == "__main__":
    main()
