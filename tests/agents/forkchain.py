"""A TERM-ignoring fork chain: each generation sleeps ~1 ms, forks, and exits.

    python forkchain.py MODE BEAT_FILE

MODE: ``same`` (every generation stays in the agent's process group), ``setsid`` (each
child starts a new session), ``pgrp`` (each child starts a new process group). Every
generation appends one byte to BEAT_FILE, so a test sees from outside whether any
generation is still alive: the file stops growing.
"""

import os
import signal
import sys
import time

mode, beat = sys.argv[1], sys.argv[2]
signal.signal(signal.SIGTERM, signal.SIG_IGN)
fd = os.open(beat, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
while True:
    os.write(fd, b".")
    time.sleep(0.001)
    if os.fork() != 0:
        os._exit(0)
    if mode == "setsid":
        os.setsid()
    elif mode == "pgrp":
        os.setpgid(0, 0)
