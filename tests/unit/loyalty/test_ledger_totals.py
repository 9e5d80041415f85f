"""Balance and lifetime points derived from the ledger's sums (no database)."""
from __future__ import annotations

from services.loyalty.service import LedgerTotals, derive_totals


def test_an_empty_ledger_has_nothing():
    assert derive_totals([]) == LedgerTotals(balance=0, lifetime_points=0)


def test_the_balance_is_every_entry_added_up():
    sums = [("earn", None, 120), ("redeem", None, -50), ("adjust", None, 10), ("adjust", None, -5)]

    assert derive_totals(sums).balance == 75


def test_lifetime_points_count_earns_only():
    sums = [("earn", None, 120), ("redeem", None, -50), ("adjust", None, 30)]

    assert derive_totals(sums).lifetime_points == 120


def test_a_reversed_earn_comes_off_the_balance_and_the_lifetime_points():
    sums = [("earn", None, 100), ("reverse", "earn", -40)]

    assert derive_totals(sums) == LedgerTotals(balance=60, lifetime_points=60)


def test_a_reversed_redemption_gives_the_points_back_without_adding_lifetime_points():
    sums = [("earn", None, 100), ("redeem", None, -70), ("reverse", "redeem", 70)]

    assert derive_totals(sums) == LedgerTotals(balance=100, lifetime_points=100)


def test_sums_from_the_database_may_be_decimals_or_none():
    from decimal import Decimal

    assert derive_totals([("earn", None, Decimal(42)), ("redeem", None, None)]) == LedgerTotals(42, 42)


def test_points_a_return_took_back_come_off_the_balance_and_the_lifetime_points():
    sums = [("earn", None, 100), ("redeem", None, -20), ("return", None, -25), ("reverse", "earn", -75)]

    assert derive_totals(sums) == LedgerTotals(balance=-20, lifetime_points=0)
