"""Log files: durable, private, interleaved in order; the live tail stays bounded."""

from __future__ import annotations

import os
import stat
import tracemalloc
from pathlib import Path

from runstop_nb._logs import FEED_WINDOW, UNRECORDED_LAG, LineCounter, LiveTail, LogFiles, TailBuffer


def make(tmp_path: Path, writes_order: bool = True) -> tuple[LogFiles, LiveTail]:
    """Without a guard the tail writes the order index itself (``writes_order``)."""
    files = LogFiles(tmp_path / "runs" / "r1").create()
    return files, LiveTail(files, TailBuffer(), writes_order=writes_order)


def write(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def test_folder_and_files_are_private(tmp_path: Path) -> None:
    files, _ = make(tmp_path)
    assert stat.S_IMODE(os.stat(files.dir).st_mode) == 0o700
    for path in (files.stdout, files.stderr, files.order):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_output_interleaves_streams_in_the_order_seen(tmp_path: Path) -> None:
    files, tail = make(tmp_path)
    write(files.stdout, b"out 1\n")
    tail.poll()
    write(files.stderr, b"err 1\n")
    tail.poll()
    write(files.stdout, b"out 2\n")
    tail.poll()
    tail.close()
    assert files.output() == "out 1\nerr 1\nout 2\n"
    assert files.output("stderr") == "err 1\n"
    assert tail.buffer.lines() == [("stdout", "out 1"), ("stderr", "err 1"), ("stdout", "out 2")]


def test_bytes_after_the_last_record_are_kept(tmp_path: Path) -> None:
    """A kernel crash leaves bytes the index never saw: output() still returns them."""
    files, tail = make(tmp_path)
    write(files.stdout, b"seen\n")
    tail.poll()
    write(files.stdout, b"unseen\n")
    write(files.stderr, b"late err\n")
    assert files.output() == "seen\nunseen\nlate err\n"


def test_tail_reads_last_lines_across_streams(tmp_path: Path) -> None:
    files, tail = make(tmp_path)
    for i in range(100):
        write(files.stdout if i % 2 else files.stderr, f"line {i}\n".encode())
        tail.poll()
    assert files.tail(3) == "line 97\nline 98\nline 99\n"
    assert files.tail(0) == ""


def test_flood_counts_every_line_but_decodes_a_bounded_window(tmp_path: Path) -> None:
    files, tail = make(tmp_path)
    write(files.stdout, b"".join(b"%09d xxxxxxxxxxxxxxxxxxxx\n" % i for i in range(200_000)))
    tail.poll()
    assert LineCounter(files).count() == 200_000
    assert tail.buffer.omitted > 0
    shown = tail.buffer.lines()
    assert len(shown) <= 250
    assert shown[-1] == ("stdout", "000199999 xxxxxxxxxxxxxxxxxxxx")
    assert sum(len(t) for _, t in shown) <= FEED_WINDOW
    tail.close()
    assert files.output().count("\n") == 200_000


def test_split_utf8_and_invalid_bytes(tmp_path: Path) -> None:
    files, tail = make(tmp_path)
    data = "héllo ✓\n".encode()
    write(files.stdout, data[:2])
    tail.poll()
    write(files.stdout, data[2:] + b"\xff\xfebad\x00\n")
    tail.poll()
    tail.close()
    texts = [t for _, t in tail.buffer.lines()]
    assert texts == ["héllo ✓", "\ufffd\ufffdbad"]
    assert files.read_bytes("stdout") == data + b"\xff\xfebad\x00\n"


def test_unterminated_last_line_counts_and_shows(tmp_path: Path) -> None:
    files, tail = make(tmp_path)
    write(files.stdout, b"a\nb")
    tail.poll()
    counter = LineCounter(files)
    assert counter.count() == 2
    assert tail.buffer.lines()[-1] == ("stdout", "b")
    write(files.stdout, b"c\n")
    write(files.stderr, b"e")
    assert counter.count() == 3, "counts only what is new, and the partial line once"


def test_progress_bar_without_newline_stays_small(tmp_path: Path) -> None:
    buf = TailBuffer()
    for pct in range(100_000):
        buf.feed("stdout", f"\r{pct}%")
    assert buf.lines() == [("stdout", "99999%")]


def test_huge_line_without_newline_is_bounded_in_memory() -> None:
    buf = TailBuffer()
    for _ in range(100):
        buf.feed("stdout", "y" * 100_000)
    (_, text), = buf.lines()
    assert len(text) < 20_000


def test_omitted_lines_are_marked_when_the_window_holds_few_lines(tmp_path: Path) -> None:
    files, tail = make(tmp_path)
    write(files.stdout, b"".join(b"%09d " % i + b"z" * 2000 + b"\n" for i in range(200)))
    tail.poll()
    shown = tail.buffer.lines()
    assert any("not shown here" in text for _, text in shown)
    assert shown[-1][1].startswith("000000199 ")
    assert LineCounter(files).count() == 200


def test_shrink_keeps_the_newest(tmp_path: Path) -> None:
    buf = TailBuffer()
    for i in range(50):
        buf.feed("stdout", f"{i}\n")
    buf.shrink(5)
    assert [t for _, t in buf.lines()] == ["45", "46", "47", "48", "49"]


def record(files: LogFiles, *records: bytes) -> None:
    write(files.order, b"".join(r + b"\n" for r in records))


def test_the_tail_follows_the_guards_order_not_its_own(tmp_path: Path) -> None:
    """The guard saw stderr written before stdout; one poll sees both: the record decides."""
    files, tail = make(tmp_path, writes_order=False)
    write(files.stdout, b"done\n")
    write(files.stderr, b"note: checkpoint 30\n")
    record(files, b"e20", b"o5")
    tail.poll()
    assert tail.buffer.lines() == [("stderr", "note: checkpoint 30"), ("stdout", "done")]
    assert files.output() == "note: checkpoint 30\ndone\n"


def test_bytes_no_record_describes_are_shown_after_a_short_lag(tmp_path: Path) -> None:
    files, tail = make(tmp_path, writes_order=False)
    write(files.stdout, b"unrecorded\n")
    tail.poll()
    assert tail.buffer.lines() == [], "the guard gets a moment to say where these bytes belong"
    import time

    time.sleep(UNRECORDED_LAG + 0.05)
    tail.poll()
    assert tail.buffer.lines() == [("stdout", "unrecorded")]


def test_input_is_kept_as_its_own_stream_in_order(tmp_path: Path) -> None:
    files, tail = make(tmp_path, writes_order=False)
    write(files.stdout, b"> ")
    write(files.stdin, b"hi\n")
    write(files.stdout, b"hello hi\n")
    record(files, b"o2", b"i3", b"o9")
    tail.close()
    assert files.output("all") == "> hi\nhello hi\n"
    assert files.output() == "> hello hi\n" and files.output("stdin") == "hi\n"
    # The display assembles each stream's lines: the prompt's partial line joins its continuation.
    assert tail.buffer.lines() == [("stdin", "hi"), ("stdout", "> hello hi")]


def test_tail_collapses_carriage_returns(tmp_path: Path) -> None:
    files, tail = make(tmp_path)
    write(files.stdout, b"start\n" + b"".join(b"\r%3d%%" % i for i in range(101)) + b"\ndone\n")
    tail.close()
    assert files.tail(3) == "start\n100%\ndone\n"


def test_tail_of_a_huge_line_reads_a_bounded_amount(tmp_path: Path) -> None:
    """A 50 MB line without a newline: tail() must not read (or return) it whole."""
    files, _tail = make(tmp_path)
    write(files.stdout, b"head\n")
    chunk = b"x" * (1 << 20)
    for _ in range(50):
        write(files.stdout, chunk)
    tracemalloc.start()
    try:
        text = files.tail(5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(text) < 100_000, len(text)
    assert "earlier bytes of this line in the log" in text or "more characters in the log" in text
    assert peak < 8 << 20, f"tail() peaked at {peak / 1e6:.1f} MB"
    assert len(files.output()) == 5 + 50 * (1 << 20), "output() still returns everything"


def test_input_goes_after_what_the_agent_had_written_when_it_was_sent(tmp_path: Path) -> None:
    """The guard may describe an answer before the kernel's input record is read, and may
    merge bytes written before and after the input: the marks put the input in its place."""
    files, _ = make(tmp_path, writes_order=False)
    write(files.stdout, b"prompt> you said hi\n")
    write(files.stdin, b"hi\n")
    write(files.order, b"i3:8:0\no20\n")  # sent when stdout held "prompt> "; one merged record
    assert files.output("all") == "prompt> hi\nyou said hi\n"
    assert files.output() == "prompt> you said hi\n", "the agent's own streams are unchanged"


def test_input_that_could_not_be_sent_is_taken_back(tmp_path: Path) -> None:
    files, _ = make(tmp_path, writes_order=False)
    write(files.stdin, b"abc")  # "abcdef" was recorded, only "abc" went through: truncated, u3
    write(files.order, b"i6:0:0\nu3\n")
    write(files.stdin, b"gh\n")
    write(files.order, b"i3:0:0\n")
    write(files.stdout, b"ok\n")
    write(files.order, b"o3\n")
    assert files.output("all") == "abcgh\nok\n"
    assert [(s, off, n) for s, off, n in files.chunks(("stdout", "stderr", "stdin"))] == [
        ("stdin", 0, 3), ("stdin", 3, 3), ("stdout", 0, 3)]
