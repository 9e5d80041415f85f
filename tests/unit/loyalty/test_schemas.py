"""Request and response schemas of the loyalty API: money as decimal strings, never floats."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from marshmallow import ValidationError

from services.loyalty.schemas import (
    AdjustmentCreateSchema,
    ProgramCreateSchema,
    PurchaseCreateSchema,
    PurchaseSchema,
    RedemptionCreateSchema,
    ReturnCreateSchema,
    plain_decimal,
)

CONTACT = str(uuid.uuid4())


def purchase(**changes) -> dict:
    body = {"contact_id": CONTACT, "amount": "42.50", "currency": "EUR", "occurred_at": "2026-03-14T10:30:00Z",
            "external_id": "receipt-1"}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


def errors(schema, body) -> dict:
    with pytest.raises(ValidationError) as info:
        schema.load(body)
    return info.value.messages


def test_a_purchase_amount_loads_as_an_exact_decimal():
    loaded = PurchaseCreateSchema().load(purchase(amount=" 0.1 "))

    assert loaded["amount"] == Decimal("0.1") and isinstance(loaded["amount"], Decimal)
    assert loaded["occurred_at"] == datetime(2026, 3, 14, 10, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize("amount, message", [
    (12.5, "decimal string"),
    (12, "decimal string"),
    ("0", "greater than 0"),
    ("-3.00", "greater than 0"),
    ("1000000000000", "greater than 0"),
    ("1.23456", "4 decimal places"),
    ("NaN", None),
    ("Infinity", None),
    ("twelve", None),
])
def test_an_amount_must_be_a_positive_decimal_string_with_at_most_4_places(amount, message):
    found = errors(PurchaseCreateSchema(), purchase(amount=amount))

    assert list(found) == ["amount"]
    if message:
        assert message in " ".join(found["amount"])


@pytest.mark.parametrize("currency", ["eur", "EURO", "E1R", "", 978])
def test_a_currency_is_a_three_letter_code_in_capitals(currency):
    assert list(errors(PurchaseCreateSchema(), purchase(currency=currency))) == ["currency"]


def test_a_naive_purchase_time_is_refused():
    assert list(errors(PurchaseCreateSchema(), purchase(occurred_at="2026-03-14T10:30:00"))) == ["occurred_at"]


def test_a_purchase_names_a_member_or_a_contact():
    found = errors(PurchaseCreateSchema(), purchase(contact_id=...))

    assert set(found) == {"member_id", "contact_id"}


def test_unknown_purchase_fields_are_refused():
    assert "points" in errors(PurchaseCreateSchema(), purchase(points=1000))


def test_every_missing_required_field_is_named():
    assert {"amount", "currency", "occurred_at"} <= set(errors(PurchaseCreateSchema(), {"contact_id": CONTACT}))


def test_amounts_are_returned_with_at_least_two_places_and_no_float_noise():
    dumped = PurchaseSchema().dump({"amount": Decimal("42.5000"), "occurred_at": datetime(2026, 3, 14, 12, 30,
                                    tzinfo=timezone(timedelta(hours=2)))})

    assert dumped["amount"] == "42.50"
    assert dumped["occurred_at"] == "2026-03-14T10:30:00+00:00"


@pytest.mark.parametrize("value, places, text", [
    (Decimal("12.5000"), 2, "12.50"), (Decimal("12.3456"), 2, "12.3456"), (Decimal(100), 2, "100.00"),
    (Decimal("1.0000"), 0, "1"), (Decimal("2.5"), 0, "2.5"), (Decimal("1E+3"), 0, "1000"),
])
def test_plain_decimal_is_exact_and_never_uses_an_exponent(value, places, text):
    assert plain_decimal(value, places) == text


@pytest.mark.parametrize("points", [0, -5, 2.0, "5", None])
def test_a_redemption_is_a_positive_whole_number_of_points(points):
    assert list(errors(RedemptionCreateSchema(), {"points": points})) == ["points"]


def test_an_adjustment_needs_a_reason_and_a_non_zero_change():
    assert set(errors(AdjustmentCreateSchema(), {"points": 0})) == {"points", "reason"}
    assert AdjustmentCreateSchema().load({"points": -20, "reason": "duplicate booking"})["points"] == -20


def test_a_program_rate_is_a_decimal_string_and_the_code_a_slug():
    found = errors(ProgramCreateSchema(), {"code": "Gold Club", "name": "Gold", "currency": "EUR",
                                           "points_per_unit": 1.5})

    assert set(found) == {"code", "points_per_unit"}
    loaded = ProgramCreateSchema().load({"code": "gold", "name": "Gold", "currency": "EUR", "points_per_unit": "1.5"})
    assert loaded == {"code": "gold", "name": "Gold", "currency": "EUR", "points_per_unit": Decimal("1.5"),
                      "auto_enrol": False, "margin_rate": None}


def test_a_purchase_may_carry_a_margin_up_to_its_amount_and_a_discount():
    loaded = PurchaseCreateSchema().load(purchase(margin="42.50", discount="5"))
    assert (loaded["margin"], loaded["discount"]) == (Decimal("42.50"), Decimal("5"))
    assert PurchaseCreateSchema().load(purchase())["margin"] is None

    assert errors(PurchaseCreateSchema(), purchase(margin="42.51")) == {"margin": ["Must not be more than the amount."]}
    assert set(errors(PurchaseCreateSchema(), purchase(margin="-1", discount="-0.01"))) == {"margin", "discount"}
    assert set(errors(PurchaseCreateSchema(), purchase(margin=1.5, discount="0.00001"))) == {"margin", "discount"}


def test_a_margin_rate_is_a_share_from_0_to_1():
    body = {"code": "gold", "name": "Gold", "currency": "EUR", "points_per_unit": "1"}
    assert ProgramCreateSchema().load({**body, "margin_rate": "0.35"})["margin_rate"] == Decimal("0.35")
    for bad in ("1.0001", "-0.1", 0.3, "0.12345"):
        assert set(errors(ProgramCreateSchema(), {**body, "margin_rate": bad})) == {"margin_rate"}


def test_a_return_needs_a_positive_amount_and_a_time_and_its_margin_is_at_most_its_amount():
    loaded = ReturnCreateSchema().load({"amount": "10", "occurred_at": "2026-03-15T10:00:00+01:00",
                                        "reason": " too small "})
    assert loaded == {"amount": Decimal("10"), "occurred_at": datetime(2026, 3, 15, 9, tzinfo=timezone.utc),
                      "reason": "too small", "margin": None}
    assert set(errors(ReturnCreateSchema(), {})) == {"amount", "occurred_at"}
    assert set(errors(ReturnCreateSchema(), {"amount": "0", "occurred_at": "2026-03-15T10:00:00"})) == {
        "amount", "occurred_at"}
    assert errors(ReturnCreateSchema(), {"amount": "1", "margin": "1.5", "occurred_at": "2026-03-15T10:00:00Z"}) == {
        "margin": ["Must not be more than the amount."]}
