"""A table of runs, as text (terminal, nbval) and HTML (notebook)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from ._units import clock

COLUMNS = ("name", "id", "status", "pid", "elapsed", "exit", "lines", "log")


def row(run: Any) -> tuple[str, ...]:
    exit_ = "" if run.returncode is None or not run.done else str(run.returncode)
    return (run.name, run.id, run.status, str(run.pid or ""), clock(run.elapsed), exit_,
            f"{run.lines:,}", str(run.log_dir))


class RunTable:
    """Rows of runs; ``str()`` is an aligned text table, ``_repr_html_`` an HTML one."""

    def __init__(self, runs: Sequence[Any]) -> None:
        self.rows = [row(r) for r in runs]

    def __str__(self) -> str:
        if not self.rows:
            return "no runs in this kernel"
        widths = [max(len(c), *(len(r[i]) for r in self.rows)) for i, c in enumerate(COLUMNS)]
        lines = ["  ".join(c.ljust(wd) for c, wd in zip(COLUMNS, widths, strict=True))]
        lines += ["  ".join(v.ljust(wd) for v, wd in zip(r, widths, strict=True)).rstrip() for r in self.rows]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        if not self.rows:
            return "<i>no runs in this kernel</i>"
        head = "".join(f"<th style='text-align:left'>{c}</th>" for c in COLUMNS)
        body = "".join("<tr>" + "".join(f"<td style='text-align:left'><code>{escape(v)}</code></td>"
                                         for v in r) + "</tr>" for r in self.rows)
        return f"<table class='runstop-table'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
