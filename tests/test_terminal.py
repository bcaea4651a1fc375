"""Terminal text cleaning for display."""

from __future__ import annotations

from runstop_nb._terminal import clean, clip, collapse_cr, plain


def test_carriage_return_keeps_the_latest_state() -> None:
    assert clean("progress 10%\rprogress 50%\rprogress 100%") == "progress 100%"


def test_trailing_carriage_return_is_kept_for_a_following_newline() -> None:
    assert collapse_cr("50%\r") == "50%\r"
    assert clean("50%\r") == "50%"


def test_colours_are_kept_cursor_codes_are_dropped() -> None:
    line = "\x1b[32mgreen\x1b[0m \x1b[2K\x1b[1A\x1b[10Cmoved\x1b]0;title\x07 end"
    assert clean(line) == "\x1b[32mgreen\x1b[0m moved end"


def test_control_characters_and_nul_are_dropped_tab_kept() -> None:
    assert clean("a\x00b\x07c\td\x08e") == "abc\tde"


def test_partial_escape_at_end_is_dropped() -> None:
    assert clean("text \x1b[3") == "text "


def test_plain_strips_colour() -> None:
    assert plain("\x1b[1;31mred\x1b[0m") == "red"


def test_clip_says_how_much_was_cut() -> None:
    out = clip("x" * 100, 10)
    assert out.startswith("x" * 10) and "90 more characters" in out
    assert clip("short", 10) == "short"
