"""The guard's order recorder: inotify tells which log grew when, so the interleaving of
stdout and stderr is kept for writes a few milliseconds apart (real files, real writes)."""

from __future__ import annotations

import os
import select
import time
from pathlib import Path

from runstop_nb._logs import LogFiles
from runstop_nb._proc.order import FLUSH_EVERY, OrderRecorder


def pump(rec: OrderRecorder, seconds: float) -> None:
    """What the guard's select loop does, for ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        timeout = rec.timeout()
        wait = min(0.01, timeout) if timeout is not None else 0.01
        assert rec.fd is not None
        if select.select([rec.fd], [], [], wait)[0]:
            rec.on_events()
        if rec.timeout() == 0.0:
            rec.flush()


def test_writes_a_few_ms_apart_keep_their_order(tmp_path: Path) -> None:
    files = LogFiles(tmp_path / "r").create()
    rec = OrderRecorder(str(files.order), str(files.stdout), str(files.stderr))
    assert rec.fd is not None, "inotify is available on Linux"
    out = os.open(files.stdout, os.O_WRONLY | os.O_APPEND)
    err = os.open(files.stderr, os.O_WRONLY | os.O_APPEND)
    try:
        expected = []
        for i in range(20):
            fd, stream = (err, "E") if i % 3 == 1 else (out, "O")
            text = f"{stream}{i}\n"
            os.write(fd, text.encode())
            expected.append(text)
            pump(rec, 0.003)
        pump(rec, FLUSH_EVERY * 2)
    finally:
        os.close(out)
        os.close(err)
        rec.close()
    assert files.output() == "".join(expected)


def test_a_flood_on_one_stream_keeps_the_index_small(tmp_path: Path) -> None:
    files = LogFiles(tmp_path / "r").create()
    rec = OrderRecorder(str(files.order), str(files.stdout), str(files.stderr))
    out = os.open(files.stdout, os.O_WRONLY | os.O_APPEND)
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.5:
            os.write(out, b"x" * 4096 + b"\n")
            if rec.fd is not None and select.select([rec.fd], [], [], 0)[0]:
                rec.on_events()
            if rec.timeout() == 0.0:
                rec.flush()
    finally:
        os.close(out)
        rec.close()
    records = files.order.read_bytes().split()
    assert len(records) <= 0.5 / FLUSH_EVERY + 3, f"{len(records)} records for one stream's flood"
    assert sum(int(r[1:]) for r in records) == files.stdout.stat().st_size
