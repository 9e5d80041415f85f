"""The rules of margins and returns (no database): a margin from a rate, margin and points a return gives back."""
from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from math import ceil, floor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.loyalty.margins import margin_given_back, purchase_margin, to_money
from services.loyalty.returns import points_owed

D = Decimal


# -- a purchase's margin ----------------------------------------------------------------------------------------

def test_a_given_margin_wins_over_the_programs_rate():
    assert purchase_margin(D("3.10"), D("10"), D("0.5")) == D("3.10")


def test_without_a_margin_the_rate_gives_it_rounded_half_up_to_four_places():
    assert purchase_margin(None, D("10.00"), D("0.3")) == D("3.0000")
    assert purchase_margin(None, D("0.0005"), D("0.5")) == D("0.0003")  # 0.00025 -> up
    assert purchase_margin(None, D("0.0003"), D("0.5")) == D("0.0002")  # 0.00015 -> up
    assert purchase_margin(None, D("999999999999.9999"), D("0.9999")) == D("999899999999.9999")


def test_without_a_margin_or_a_rate_the_margin_is_not_known():
    assert purchase_margin(None, D("10"), None) is None


def test_money_rounds_half_up():
    assert (to_money(D("0.00005")), to_money(D("0.00004")), to_money(D("-0.00005"))) == (
        D("0.0001"), D("0.0000"), D("-0.0001"))


# -- the margin a return gives back -----------------------------------------------------------------------------

def test_a_partial_return_gives_back_its_share_of_the_margin():
    assert margin_given_back(D("30"), D("100"), returned_before=D(0), margin_returned_before=D(0),
                             returning=D("25")) == D("7.5000")


def test_the_return_of_the_rest_gives_back_the_rest_of_the_margin():
    # Thirds do not divide evenly: the last part takes what is left, so the three add up to the margin exactly.
    parts, margin_back, returned = [D("33.3333"), D("33.3333"), D("33.3334")], D(0), D(0)
    for part in parts:
        margin_back += margin_given_back(D("10"), D("100"), returned_before=returned,
                                         margin_returned_before=margin_back, returning=part)
        returned += part
    assert margin_back == D("10")


def test_no_margin_on_the_purchase_means_none_given_back():
    assert margin_given_back(None, D("100"), returned_before=D(0), margin_returned_before=D(0),
                             returning=D("1")) is None


def test_the_margin_given_back_never_exceeds_what_is_left_nor_the_return():
    # Earlier returns gave back most of the margin by hand; the last one cannot give back more than is left.
    assert margin_given_back(D("50"), D("100"), returned_before=D("50"), margin_returned_before=D("48"),
                             returning=D("10")) == D("2")
    # Earlier returns gave back none of it; the last one gives back at most its own amount.
    assert margin_given_back(D("50"), D("100"), returned_before=D("90"), margin_returned_before=D("0"),
                             returning=D("10")) == D("10")


# -- the points a return takes back ----------------------------------------------------------------------------

def test_a_return_owes_its_share_of_the_points_rounded_up():
    # 42 points on 42.50: returning 10.00 owes ceil(42 x 10 / 42.5) = ceil(9.88) = 10.
    assert points_owed(42, D("42.50"), returned_before=D(0), returning=D("10.00")) == 10


def test_a_full_return_owes_every_point_and_a_purchase_that_earned_nothing_owes_nothing():
    assert points_owed(42, D("42.50"), returned_before=D(0), returning=D("42.50")) == 42
    assert points_owed(0, D("42.50"), returned_before=D(0), returning=D("42.50")) == 0


def test_small_returns_cannot_keep_the_points_by_rounding():
    # 1 point on 10.00; ten returns of 1.00: the first already owes the point (ceil), the rest owe nothing.
    owed = [points_owed(1, D("10"), returned_before=D(n), returning=D(1)) for n in range(10)]
    assert owed == [1] + [0] * 9


amounts = st.integers(min_value=1, max_value=10**16 - 1).map(lambda units: Decimal(units).scaleb(-4))


@settings(max_examples=300, deadline=None)
@given(earned=st.integers(min_value=0, max_value=10**12), amount=amounts, cuts=st.lists(
    st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=6))
def test_returns_in_any_parts_owe_exactly_the_proportional_points_rounded_up_and_all_of_them_in_the_end(
        earned, amount, cuts):
    # Split the amount into parts (whole ten-thousandths), the last one returning the rest.
    units = int(amount.scaleb(4))
    marks = sorted({min(units, max(0, int(units * cut))) for cut in cuts} | {units})
    returned, owed_so_far, previous = D(0), 0, 0
    for mark in marks:
        part = Decimal(mark - previous).scaleb(-4)
        previous = mark
        if part == 0:
            continue
        owed = points_owed(earned, amount, returned_before=returned, returning=part)
        assert owed >= 0
        owed_so_far += owed
        returned += part
        # Checked with exact fractions, not the function's integer arithmetic.
        assert owed_so_far == ceil(Fraction(earned) * Fraction(returned) / Fraction(amount))
        assert earned - owed_so_far == floor(Fraction(earned) * Fraction(amount - returned) / Fraction(amount))
    assert owed_so_far == earned


@pytest.mark.parametrize("returning", [D("0.0001"), D("1"), D("12.3456")])
def test_points_owed_are_whole_numbers(returning):
    assert isinstance(points_owed(7, D("12.3456"), returned_before=D(0), returning=returning), int)
