"""Relative times as a commander reads them under pressure: "in 25 min", "3 h ago"."""

from __future__ import annotations

__all__ = ["relative"]


def relative(seconds: float) -> str:
    """``seconds`` from now (negative: past) as ``in 25 min``, ``3 h ago``, ``now``.

    Minutes below two hours, hours (one decimal below ten) below two days, days beyond.
    """
    span = abs(seconds)
    if span < 60:
        return "now"
    if span < 7200:
        amount = f"{span / 60:.0f} min"
    elif span < 172800:
        hours = span / 3600
        amount = f"{hours:.1f} h" if hours < 10 else f"{hours:.0f} h"
    else:
        amount = f"{span / 86400:.1f} d"
    return f"in {amount}" if seconds > 0 else f"{amount} ago"
