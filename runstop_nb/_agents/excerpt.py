"""Bounded text from event values: cut strings, first lines, JSON shown as text.

Every helper does work proportional to its limit, not to its input, wherever it can: an
agent may print a single 10 MB event, and its card must cost no more than a small one.
The one exception is :func:`as_text` on a dict or list, which renders the whole value
(``json.dumps``, linear and in C) because its length is the card's ``full_chars``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .summary import SUMMARY_CHARS

ELLIPSIS = "…"
_SCAN_CHARS = 100_000  # leading blank text skipped when looking for a first line


def cut(text: str, limit: int) -> str:
    """Return ``text`` if it fits in ``limit`` characters, else its head and an ellipsis."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)] + ELLIPSIS


def first_line(text: str, limit: int = SUMMARY_CHARS) -> str:
    """Return the first non-blank line of ``text``, stripped and cut to ``limit``."""
    window = text if len(text) <= _SCAN_CHARS else text[:_SCAN_CHARS]
    head = window.lstrip()[: limit + 1]
    line = head.split("\n", 1)[0].rstrip()
    return cut(line, limit)


def as_text(value: object) -> str:
    """Return an event value as display text: strings as they are, JSON for the rest."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, indent=2, default=str)
    except (TypeError, ValueError, RecursionError):
        return str(value)


def compact(value: object, limit: int = SUMMARY_CHARS) -> str:
    """Return a one-line rendering of ``value`` in at most ``limit`` characters."""
    if isinstance(value, str):
        return first_line(value, limit)
    if isinstance(value, Mapping):
        parts: list[str] = []
        size = 0
        for key, item in value.items():
            if size > limit:
                break
            shown = first_line(item, limit) if isinstance(item, str) else _scalar(item)
            part = f"{key}={shown}"
            parts.append(part)
            size += len(part) + 2
        return cut(", ".join(parts), limit)
    return cut(_scalar(value), limit)


def _scalar(value: object) -> str:
    if isinstance(value, (dict, list)):
        return "{…}" if isinstance(value, dict) else f"[{len(value)} items]"
    return json.dumps(value, ensure_ascii=False, default=str) if value is not None else "null"


def get_str(obj: Mapping[str, Any], *keys: str) -> str | None:
    """Return the first of ``keys`` whose value in ``obj`` is a non-empty string."""
    for key in keys:
        value = obj.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def get_int(obj: Mapping[str, Any], key: str) -> int:
    """Return ``obj[key]`` as a non-negative int, 0 when missing or not a number."""
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    return max(int(value), 0)


def get_dict(obj: Mapping[str, Any], key: str) -> dict[str, Any]:
    """Return ``obj[key]`` if it is a dict, else an empty dict."""
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def get_list(obj: Mapping[str, Any], key: str) -> list[Any]:
    """Return ``obj[key]`` if it is a list, else an empty list."""
    value = obj.get(key)
    return value if isinstance(value, list) else []
