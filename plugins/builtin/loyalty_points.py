"""Built-in loyalty points: the program's base rate, points per whole currency unit, rounded down.

Registered as `builtin.loyalty_points`, exactly like a third-party plugin; disable it with
CRM_PLUGINS_DISABLED=builtin.loyalty_points to award points with your own plugins only.
"""
from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal

from crm_plugins import PointAward, ProgramInput, PurchaseInput, hookimpl


def plain(value: Decimal) -> str:
    """A decimal without trailing zeros or exponent: 42.5000 -> '42.5', 100 -> '100'."""
    return format(value.normalize(), "f")


def base_points(purchase: PurchaseInput, program: ProgramInput) -> PointAward:
    """floor(amount x points per unit): 42.50 EUR at 1 point per EUR earns 42."""
    if purchase.currency != program.currency:
        # The service never sends a mismatch; stay explainable if a caller does.
        return PointAward("base_points", 0, f"{purchase.currency} is not the currency of program "
                                            f"{program.code} ({program.currency}); no base points")
    points = int((purchase.amount * program.points_per_unit).to_integral_value(rounding=ROUND_FLOOR))
    reason = (f"{plain(purchase.amount)} {purchase.currency} at {plain(program.points_per_unit)} "
              f"point(s) per {program.currency} = {points} points (rounded down)")
    return PointAward("base_points", points, reason)


@hookimpl
def crm_loyalty_points(purchase: PurchaseInput, program: ProgramInput) -> PointAward:
    """The base points of the purchase at the program's rate."""
    return base_points(purchase, program)
