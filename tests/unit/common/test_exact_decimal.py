"""The kit's exact decimal field (services/common/schemas.py) and the two request schemas that share it: a
contact's invoice amount and a partner delivery's quantities and amounts keep their own messages and field names."""
from __future__ import annotations

from decimal import Decimal

import pytest
from marshmallow import Schema, ValidationError

from services.common.schemas import ExactDecimal, decimal_places
from services.contacts.payments_api import PaymentCreateSchema
from services.partners.deliveries_api import DeliveryInSchema


@pytest.mark.parametrize(("text", "places"), [
    ("1.25", 2), ("1.2500", 2), ("100", 0), ("1E+2", 0), ("0.000", 0), ("0", 0), ("10.0", 0), ("-0.050", 2),
    ("0.0001", 4), ("1.0000000000000000000000000000001", 31),  # more digits than the context's 28: not rounded
])
def test_decimal_places_counts_the_places_a_value_needs_trailing_zeros_aside(text, places):
    assert decimal_places(Decimal(text)) == places


class _Quantity(Schema):
    value = ExactDecimal(3, Decimal("999.999"), min_inclusive=False)


def _errors(schema: Schema, body: dict) -> dict:
    with pytest.raises(ValidationError) as refused:
        schema.load(body)
    return refused.value.messages


def test_an_exact_decimal_loads_a_decimal_and_dumps_a_decimal_string():
    loaded = _Quantity().load({"value": "12.500"})["value"]
    assert loaded == Decimal("12.500") and isinstance(loaded, Decimal)
    assert _Quantity().dump({"value": Decimal("12.500")}) == {"value": "12.500"}
    assert _Quantity().load({"value": "1.5000000"})["value"] == Decimal("1.5"), "trailing zeros are not places"


@pytest.mark.parametrize(("value", "messages"), [
    ("0", ["Must be greater than 0 and less than or equal to 999.999."]),
    ("1000", ["Must be greater than 0 and less than or equal to 999.999."]),
    ("1.0001", ["Use at most 3 decimal places."]),
    ("-0.0001", ["Must be greater than 0 and less than or equal to 999.999.", "Use at most 3 decimal places."]),
    ("NaN", ["Special numeric values (nan or infinity) are not permitted."]),
    ("Infinity", ["Special numeric values (nan or infinity) are not permitted."]),
    ("ten", ["Not a valid number."]),
])
def test_an_exact_decimal_refuses_under_the_fields_name_with_every_reason(value, messages):
    assert _errors(_Quantity(), {"value": value}) == {"value": messages}


def _invoice(amount) -> dict:
    return {"invoice_reference": "INV-1", "amount": amount, "currency": "EUR", "due_on": "2026-01-31"}


@pytest.mark.parametrize(("amount", "messages"), [
    ("0", ["Must be more than 0 and less than 100000000000000."]),
    ("-5", ["Must be more than 0 and less than 100000000000000."]),
    ("100000000000000", ["Must be more than 0 and less than 100000000000000."]),
    ("1.00001", ["Use at most 4 decimal places."]),
    ("1.0000000000000000000000000000001", ["Use at most 4 decimal places."]),
])
def test_an_invoice_amount_keeps_its_messages(amount, messages):
    assert _errors(PaymentCreateSchema(), _invoice(amount)) == {"amount": messages}


def test_an_invoice_amount_up_to_four_places_is_accepted():
    assert PaymentCreateSchema().load(_invoice("99999999999999.9999"))["amount"] == Decimal("99999999999999.9999")
    assert PaymentCreateSchema().load(_invoice("120.50000"))["amount"] == Decimal("120.5")


def _delivery(**values) -> dict:
    return {"order_reference": "PO-1", "promised_on": "2026-08-15", "quantity_ordered": "1",
            "quantity_delivered": "0", "amount": "1", "currency": "EUR", **values}


@pytest.mark.parametrize(("field", "value", "messages"), [
    ("quantity_ordered", "0", ["Must be greater than 0 and less than or equal to 999999999999.999."]),
    ("quantity_delivered", "-1", ["Must be greater than or equal to 0 and less than or equal to 999999999999.999."]),
    ("quantity_rejected", "0.0001", ["Use at most 3 decimal places."]),
    ("amount", "10000000000000", ["Must be greater than or equal to 0 and less than or equal to 9999999999999.99."]),
    ("agreed_amount", "1.001", ["Use at most 2 decimal places."]),
    ("amount", "1.0000000000000000000000000000001", ["Use at most 2 decimal places."]),
])
def test_a_deliverys_quantities_and_amounts_keep_their_messages(field, value, messages):
    assert _errors(DeliveryInSchema(), _delivery(**{field: value})) == {field: messages}


def test_a_deliverys_amounts_and_quantities_within_their_places_are_accepted():
    loaded = DeliveryInSchema().load(_delivery(quantity_ordered="100.000", amount="800.00", agreed_amount="800"))
    assert (loaded["quantity_ordered"], loaded["amount"], loaded["agreed_amount"]) == (
        Decimal("100"), Decimal("800"), Decimal("800"))
