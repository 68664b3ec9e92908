"""Distributions and tables for load reports: mean, median, p90, p95, p99."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["Summary", "format_table", "summarize"]


@dataclass(frozen=True, slots=True)
class Summary:
    """A distribution in the figures a load report prints."""

    count: int
    mean: float
    median: float
    p90: float
    p95: float
    p99: float
    max: float

    def scaled(self, factor: float) -> Summary:
        """The same distribution in other units (e.g. seconds to ms)."""
        return Summary(self.count, *(getattr(self, f) * factor
                                     for f in ("mean", "median", "p90", "p95", "p99", "max")))

    def as_dict(self) -> dict[str, Any]:
        """Plain values for ``--json``."""
        return asdict(self)


def summarize(values: Iterable[float] | np.ndarray) -> Summary:
    """Summary of *values*; all zeros when empty."""
    data = np.asarray(list(values) if not isinstance(values, np.ndarray) else values,
                      dtype=np.float64)
    if data.size == 0:
        return Summary(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    p90, p95, p99 = np.percentile(data, [90, 95, 99])
    return Summary(int(data.size), float(data.mean()), float(np.median(data)),
                   float(p90), float(p95), float(p99), float(data.max()))


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table with right-aligned numbers."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                       for i, (h, w) in enumerate(zip(headers, widths, strict=True)))]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)
