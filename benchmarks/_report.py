"""Figures: summaries of repeated samples, metrics judged against targets, the table and JSON."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Summary:
    """Median, min and max of repeated samples (the median is the figure we judge)."""

    median: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> Summary:
        if not samples:
            raise ValueError("no samples")
        return cls(statistics.median(samples), min(samples), max(samples), len(samples))

    def text(self, fmt: str) -> str:
        if self.n == 1:
            return format(self.median, fmt)
        return f"{self.median:{fmt}} [{self.min:{fmt}}–{self.max:{fmt}}]"


def paired_ratio(a: Sequence[float], b: Sequence[float]) -> Summary:
    """Ratios of interleaved pairs (a[i] / b[i]): each pair shared the same noise."""
    return Summary.of([x / y for x, y in zip(a, b, strict=True) if y > 0])


@dataclass(frozen=True)
class Metric:
    key: str
    title: str
    unit: str
    fmt: str
    value: Summary | None
    baseline: Summary | None
    baseline_label: str
    ratio: float | None
    target: str
    met: bool
    notes: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "value": _round(self.value.median) if self.value else None,
            "baseline": _round(self.baseline.median) if self.baseline else None,
            "ratio": _round(self.ratio),
            "unit": self.unit,
            "target": self.target,
            "met": self.met,
            "title": self.title,
            "baseline_label": self.baseline_label,
        }
        if self.value:
            out.update(min=_round(self.value.min), max=_round(self.value.max), n=self.value.n)
        if self.baseline:
            out.update(baseline_min=_round(self.baseline.min), baseline_max=_round(self.baseline.max),
                       baseline_n=self.baseline.n)
        out["details"] = self.details
        out["notes"] = list(self.notes)
        if self.error:
            out["error"] = self.error
        return out


def failed(key: str, title: str, unit: str, target: str, error: str) -> Metric:
    """A metric whose measurement raised: reported, never silently dropped."""
    return Metric(key, title, unit, ".1f", None, None, "", None, target, False, error=error)


def _round(x: float | None) -> float | None:
    return None if x is None else float(f"{x:.4g}")


def table(metrics: list[Metric]) -> str:
    """The plain-text table: one row per metric, notes indented under it."""
    header = ("metric", "runstop_nb: median [min–max]", "baseline: median [min–max]", "ratio", "target", "met")
    rows = [header]
    for m in metrics:
        value = f"{m.value.text(m.fmt)} {m.unit}" if m.value else "—"
        base = f"{m.baseline.text(m.fmt)} {m.unit} ({m.baseline_label})" if m.baseline else m.baseline_label or "—"
        ratio = f"{m.ratio:.3g}x" if m.ratio is not None else "—"
        rows.append((f"{m.key} {m.title}", value, base, ratio, m.target, "yes" if m.met else "NO"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    out = ["\n".join(lines), ""]
    for m in metrics:
        if m.error:
            out.append(f"{m.key}: measurement failed: {m.error}")
        for note in m.notes:
            out.append(f"{m.key}: {note}")
    return "\n".join(out)


def markdown(metrics: list[Metric]) -> str:
    """The same table in Markdown, for the README."""
    lines = ["| Metric | runstop_nb: median [min–max] | Baseline: median [min–max] | Ratio | Target | Met |",
             "|---|---|---|---|---|---|"]
    for m in metrics:
        value = f"{m.value.text(m.fmt)} {m.unit}" if m.value else "—"
        base = f"{m.baseline.text(m.fmt)} {m.unit} ({m.baseline_label})" if m.baseline else m.baseline_label or "—"
        ratio = f"{m.ratio:.3g}x" if m.ratio is not None else "—"
        lines.append(f"| {m.key} {m.title} | {value} | {base} | {ratio} | {m.target} | "
                     f"{'yes' if m.met else '**no**'} |")
    return "\n".join(lines)
