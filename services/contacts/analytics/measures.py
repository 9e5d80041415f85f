"""The measures in SQL: one statement per pass over one refresh's customer_analytics rows (docs/analytics.md).

(Being written: the passes below are placeholders so the runner can be built against them.)
"""
from __future__ import annotations


def base(session, refresh, params) -> int:
    """Insert one row per contact with its window and lifetime figures; the number of rows."""
    return 0


def abc(session, refresh, params) -> None:
    """ABC classes by window revenue."""


def rfm(session, refresh, params) -> None:
    """Recency, frequency and monetary scores and the RFM segment."""


def clv(session, refresh, params) -> None:
    """Predicted margin and lifetime value."""


def profitability(session, refresh, params) -> None:
    """Current profit and the profitability matrix's quadrant."""


def pyramid(session, refresh, params) -> None:
    """The customer pyramid's level."""


def lifecycle(session, refresh, params) -> None:
    """The lifecycle stage by the rules."""


PASSES = {"base": base, "abc": abc, "rfm": rfm, "clv": clv, "profitability": profitability, "pyramid": pyramid,
          "lifecycle": lifecycle}
