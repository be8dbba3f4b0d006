"""How the dashboard writes numbers: a few significant digits, never the seventeen of a float's repr."""

from __future__ import annotations

from typing import Any

SIGNIFICANT = 4
#: printf format of number columns in tables (Streamlit's NumberColumn): the same four significant digits.
COLUMN_FORMAT = f"%.{SIGNIFICANT}g"


def compact(value: Any, digits: int = SIGNIFICANT) -> str:
    """A number for reading: ``digits`` significant digits (0.9123, 15.27, 1.2e-05), large ones and integers
    with thousands separators (12,346); "-" for none or NaN; anything else as its text."""
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or 10**digits <= abs(value) < 1e15:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"
