"""Number formatting shared by the report and the targets ("–" for a missing value)."""

from __future__ import annotations

import math

__all__ = ["megabytes", "num", "signed", "times"]


def num(x, nd: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{nd}f}"


def times(x) -> str:
    return "–" if x is None else f"{x:.2f}x"


def signed(x, nd: int = 2) -> str:
    return "–" if x is None else f"{x:+.{nd}f}"


def megabytes(b) -> str:
    return "–" if b is None else f"{b / 1e6:.2f}"
