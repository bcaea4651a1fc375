"""Durations, sizes and counts in words a person reads at a glance."""

from __future__ import annotations


def clock(seconds: float | None) -> str:
    """``mm:ss``, or ``h:mm:ss`` from an hour on; ``-`` when unknown."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


def size(nbytes: float) -> str:
    """Bytes in B, kB, MB or GB (decimal units): ``417 B``, ``1.2 kB``, ``3.4 MB``."""
    value = float(nbytes)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``1 line``, ``2 lines``, ``1,204 processes`` (``many`` for irregular plurals)."""
    word = noun if count == 1 else (many or noun + "s")
    return f"{count:,} {word}"


def ago(seconds: float) -> str:
    """A short human age: ``42s``, ``2m 10s``, ``1h 05m``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s // 60 % 60:02d}m"
