"""Terminal text made safe to display: keep colours, collapse ``\\r``, drop cursor codes.

JupyterLab and Notebook 7 render ANSI SGR (colour, bold) in stream output but not cursor
movement, and their ``\\r`` handling has regressed several times (jupyterlab #16995,
#17039, #17358). So lines are cleaned here, in Python, before they reach a widget.
"""

from __future__ import annotations

import re

_CSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
_OSC = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
_ESC2 = re.compile(r"\x1b[()*+][0-9A-Za-z]|\x1b[@-Z\\^_=>78]")
_C0 = re.compile(r"[\x00-\x08\x0b-\x1a\x1c-\x1f\x7f]")
_PARTIAL_ESC = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*)?$")
_SGR_ANY = re.compile(r"\x1b\[[0-9;:]*m")


def collapse_cr(line: str) -> str:
    """Keep what a terminal would show after carriage returns: the text after the last one.

    A trailing ``\\r`` is kept, since the next chunk may complete it as ``\\r\\n``.
    """
    body = line[:-1] if line.endswith("\r") else line
    cut = body.rfind("\r")
    return line[cut + 1 :] if cut >= 0 else line


def _keep_sgr(match: re.Match[str]) -> str:
    return match.group(0) if match.group(0).endswith("m") else ""


_SPECIAL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # anything clean() might change


def clean(line: str) -> str:
    """Drop everything but SGR colour codes and printable text from one line."""
    if not _SPECIAL.search(line):
        return line  # plain text, by far the common case under a flood
    line = collapse_cr(line).rstrip("\r")
    line = _OSC.sub("", line)
    line = _CSI.sub(_keep_sgr, line)
    line = _ESC2.sub("", line)
    line = _PARTIAL_ESC.sub("", line)
    return _C0.sub("", line)


def plain(line: str) -> str:
    """The visible text of a cleaned line, without colour codes."""
    return _SGR_ANY.sub("", line)


def clip(line: str, limit: int) -> str:
    """Shorten a line to about ``limit`` characters, saying how much was cut."""
    if len(line) <= limit:
        return line
    return line[:limit] + f"\x1b[0m … [{len(line) - limit:,} more characters in the log]"
