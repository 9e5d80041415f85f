"""The vocabulary of the measures and the parameters a refresh runs with (formulas: docs/analytics.md).

A refresh stores the parameters it ran with (`Parameters.to_json()`), so a snapshot can always be explained.
Defaults are below; CRM_ANALYTICS_PARAMETERS (a JSON object) overrides some of them suite-wide, and a
request for a refresh may override them for that refresh.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

ABC_CLASSES = ("A", "B", "C")
RFM_SEGMENTS = ("champions", "loyal", "new", "potential", "at_risk", "hibernating", "needs_attention")
QUADRANTS = ("best", "invest", "hold", "worst")
PYRAMID_LEVELS = ("top", "big", "medium", "small", "inactive", "prospect")
STAGES = ("prospect", "new", "general", "repeater", "loyal", "lapsed")
MEASURES = ("abc", "rfm", "clv", "profitability", "pyramid", "lifecycle")
INTERACTION_KINDS = ("call", "meeting", "email", "inquiry", "complaint", "note")
MEDIAN = "median"
UNITS_PER_UNIT = 10_000  # money in the analytics tables is integer units of 1/10,000


def default_costs() -> dict[str, Decimal]:
    return {"call": Decimal("5"), "meeting": Decimal("50"), "email": Decimal("1"), "inquiry": Decimal("3"),
            "complaint": Decimal("25"), "note": Decimal("0")}


@dataclass(frozen=True)
class Parameters:
    """Everything a refresh's results depend on besides the data, the currency and `as_of`."""

    window_days: int = 365
    abc_a_share: Decimal = Decimal("0.80")  # cumulative revenue share that class A makes up
    abc_b_share: Decimal = Decimal("0.95")  # ... A and B together
    pyramid_top_share: Decimal = Decimal("0.01")  # share of active customers (by rank) at the top
    pyramid_big_share: Decimal = Decimal("0.04")
    pyramid_medium_share: Decimal = Decimal("0.15")
    repeater_min_purchases: int = 3
    loyal_min_purchases: int = 6
    lapsed_after_days: int = 365
    discount_rate: Decimal = Decimal("0.10")  # per year
    default_retention: Decimal = Decimal("0.50")  # when no customer bought in the year before last
    max_retention: Decimal = Decimal("0.95")
    min_tenure_days: int = 365
    interaction_costs: dict = field(default_factory=default_costs)  # kind -> cost, in the refresh's currency
    current_threshold: Decimal | str = MEDIAN  # profitability matrix: a number, or "median"
    future_threshold: Decimal | str = MEDIAN
