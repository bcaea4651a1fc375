"""The transcript: a run's stdout parsed incrementally, from more than one thread."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from runstop_nb._transcript import POLL_BYTES, Transcript

CAPTURE = Path(__file__).parent / "fixtures" / "streams" / "claude-multi_turn.jsonl"


def stream(path: Path, repeats: int) -> int:
    """A Claude stream whose middle is repeated with fresh ids; return its tool calls."""
    rows = [json.loads(line) for line in CAPTURE.read_text().splitlines() if line.strip()]
    head, body, tail = rows[0], rows[1:-1], rows[-1]
    calls = 0
    with open(path, "w") as f:
        f.write(json.dumps(head) + "\n")
        for n in range(repeats):
            for row in body:
                text = json.dumps(row).replace("rehearsal000", f"r{n:07d}_")
                calls += '"tool_use"' in text and '"tool_use_id"' not in text
                f.write(text + "\n")
        f.write(json.dumps(tail) + "\n")
    return calls


@pytest.mark.parametrize("trial", range(5))
def test_polling_and_closing_from_two_threads_parse_every_event_once(tmp_path: Path, trial: int) -> None:
    """The supervisor's tick polls while the run's end closes the transcript on another
    thread: reads must not interleave, or events are skipped or parsed twice."""
    path = tmp_path / "stdout.log"
    calls = stream(path, 600)
    assert path.stat().st_size > 4 * POLL_BYTES, "the stream takes several polls"
    t = Transcript(path, "claude")
    ticking = threading.Event()
    done = threading.Event()

    def tick() -> None:
        while not done.is_set():
            t.poll()
            ticking.set()

    poller = threading.Thread(target=tick)
    poller.start()
    try:
        ticking.wait(5)
        t.close()
    finally:
        done.set()
        poller.join(10)
    summary = t.summary()
    assert summary is not None and summary.tool_calls == calls, (summary, calls)
