"""The shape of one `total_spend` line of a contact's (or an account's) `purchases` block, as JSON."""
from __future__ import annotations


def spend_line(currency: str, amount: str, count: int, *, returned: str = "0.0000", margin: str = "0.0000",
               discount: str = "0.0000", net: str | None = None) -> dict:
    """A line with these figures; `net` defaults to `amount` (right when nothing was returned)."""
    return {"currency": currency, "amount": amount, "count": count, "returned": returned,
            "net": amount if net is None else net, "margin": margin, "discount": discount}
