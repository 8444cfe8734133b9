"""How the reports write a figure that is an estimate, so `plan` and `status` (videos and
enrichments alike) round and mark it the same way."""

from __future__ import annotations

__all__ = ["about"]


def about(n: float) -> str:
    """`n` to two significant digits, marked as approximate: 1,638 → "~1,600"."""
    if n < 100:
        return f"~{round(n):,}"
    digits = len(str(int(n))) - 2
    return f"~{round(n, -digits):,.0f}"
