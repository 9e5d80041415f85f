"""Margins: what the business made on a purchase, and the part of it a return gives back (pure rules).

Money keeps four decimal places (the columns' NUMERIC(18, 4)); a margin worked out from a rate or a share is
rounded half up to them (0.00005 -> 0.0001), the way a till rounds a price.
"""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, localcontext

PLACES = Decimal("0.0001")
# Digits enough for a product of two amounts (each up to 10^12 with four places) before it is rounded once.
PRECISION = 60


def to_money(value: Decimal) -> Decimal:
    """`value` rounded half up to four decimal places."""
    return value.quantize(PLACES, rounding=ROUND_HALF_UP)


def purchase_margin(given: Decimal | None, amount: Decimal, rate: Decimal | None) -> Decimal | None:
    """The purchase's margin: the one given, else amount x the program's margin_rate, else None (not known)."""
    if given is not None:
        return given
    if rate is None:
        return None
    with localcontext() as context:
        context.prec = PRECISION
        return to_money(amount * rate)  # rate <= 1, so the margin never exceeds the amount


def margin_given_back(margin: Decimal | None, amount: Decimal, *, returned_before: Decimal,
                      margin_returned_before: Decimal, returning: Decimal) -> Decimal | None:
    """The margin a return of `returning` gives back when the caller names none.

    The purchase's margin in proportion to the part returned, never more than the margin left nor than the
    return itself; the return that takes the rest of the amount takes the rest of the margin too, so a purchase
    returned in full, in any number of parts, gives back exactly its margin. None when the purchase has none.
    """
    if margin is None:
        return None
    left = margin - margin_returned_before
    if returned_before + returning == amount:
        share = left
    else:
        with localcontext() as context:
            context.prec = PRECISION
            share = to_money(margin * returning / amount)
    return max(Decimal(0), min(share, left, returning))
