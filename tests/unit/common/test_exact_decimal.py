"""The kit's exact decimal field (services/common/schemas.py) and the request schemas that share it: a contact's
invoice amount, a partner delivery's quantities and amounts, a dispute's amount, a contract's discount and minimum
order volume, and the loyalty API's amounts and rates keep their own messages and field names."""
from __future__ import annotations

from decimal import Decimal

import pytest
from marshmallow import Schema, ValidationError
from marshmallow import validate as mv

from services.common.schemas import ExactDecimal, decimal_places
from services.contacts.payments_api import PaymentCreateSchema
from services.contacts.purchase_facts import exact_amount
from services.loyalty.schemas import (
    ProgramCreateSchema,
    PurchaseCreateSchema,
    ReturnCreateSchema,
)
from services.partners.deliveries_api import DeliveryInSchema
from services.partners.disputes_api import DisputeOpenSchema
from services.partners.schemas import (
    ContractCreateSchema,
    TermsChangeSchema,
    TermsSchema,
)

BEYOND_28_DIGITS = "1.0000000000000000000000000000001"  # normalize() would round it to 1


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
        Decimal(100), Decimal(800), Decimal(800))


class _Share(Schema):
    value = ExactDecimal(4, Decimal(1), strings_only=True)


class _WordedShare(Schema):
    value = ExactDecimal(4, Decimal(1), strings_only=True, error_messages={"not_string": "A string, please."})


@pytest.mark.parametrize("value", [0.5, 1, True, ["0.5"]])
def test_a_strings_only_exact_decimal_refuses_anything_but_a_string(value):
    assert _errors(_Share(), {"value": value}) == {"value": ['Send the number as a decimal string, e.g. "12.50".']}
    assert _errors(_WordedShare(), {"value": value}) == {"value": ["A string, please."]}


def test_an_exact_decimal_takes_a_json_number_unless_told_strings_only():
    assert _Quantity().load({"value": 12.5})["value"] == Decimal("12.5")


@pytest.mark.parametrize(("text", "loaded"), [
    ("0.500000", "0.5000"), ("0.00000", "0.0000"), ("1.0000", "1.0000"), ("0.25", "0.25"), ("1", "1"),
    ("0." + "0" * 40, "0.0000"),  # more digits than the context's 28: built from the digits, not rounded
])
def test_an_exact_decimal_drops_the_trailing_zeros_past_its_places_and_no_other_digit(text, loaded):
    value = _Share().load({"value": text})["value"]
    assert str(value) == loaded


def test_places_are_still_counted_on_every_digit_sent():
    assert _errors(_Share(), {"value": "0.50001"}) == {"value": ["Use at most 4 decimal places."]}
    assert _errors(_Share(), {"value": "0." + "0" * 40 + "1"}) == {"value": ["Use at most 4 decimal places."]}


# -- a dispute's amount ------------------------------------------------------------------------------------

def _dispute(amount) -> dict:
    return {"category": "quality", "amount": amount, "currency": "EUR", "invoice_reference": "INV-1",
            "message": "Twelve pallets arrived damaged."}


@pytest.mark.parametrize(("amount", "messages"), [
    ("-1", ["Must be greater than or equal to 0 and less than or equal to 9999999999999.99."]),
    ("10000000000000", ["Must be greater than or equal to 0 and less than or equal to 9999999999999.99."]),
    ("1.001", ["Use at most 2 decimal places."]),
    (BEYOND_28_DIGITS, ["Use at most 2 decimal places."]),
    ("1250.5" + "0" * 30 + "1", ["Use at most 2 decimal places."]),
    (1250.5, ['Send the amount as a decimal string, e.g. "1250.50".']),
    (1250, ['Send the amount as a decimal string, e.g. "1250.50".']),
    ("NaN", ["Special numeric values (nan or infinity) are not permitted."]),
    ("twelve", ["Not a valid number."]),
])
def test_a_dispute_amount_keeps_its_messages_and_is_never_rounded(amount, messages):
    assert _errors(DisputeOpenSchema(), _dispute(amount)) == {"amount": messages}


def test_a_dispute_amount_up_to_two_places_is_accepted_as_sent():
    assert str(DisputeOpenSchema().load(_dispute("1250.50"))["amount"]) == "1250.50"
    assert str(DisputeOpenSchema().load(_dispute("1250.5000000"))["amount"]) == "1250.50"
    assert DisputeOpenSchema().load(_dispute("9999999999999.99"))["amount"] == Decimal("9999999999999.99")
    assert DisputeOpenSchema().load(_dispute("0"))["amount"] == 0


# -- a contract's terms -------------------------------------------------------------------------------------

def _terms(**values) -> dict:
    return {"payment_terms_days": 30, "discount_percent": "2.5", "delivery_lead_time_days": 14,
            "minimum_order_volume": "1000", "currency": "EUR", "effective_from": "2026-01-01", **values}


PERCENT_RANGE = "Must be greater than or equal to 0 and less than or equal to 100."
VOLUME_RANGE = "Must be greater than or equal to 0 and less than or equal to 999999999999.999."


@pytest.mark.parametrize(("field", "value", "messages"), [
    ("discount_percent", "-0.01", [PERCENT_RANGE]),
    ("discount_percent", "100.01", [PERCENT_RANGE]),
    ("discount_percent", "2.125", ["Use at most 2 decimal places."]),
    ("discount_percent", 0.125, ["Use at most 2 decimal places."]),
    ("discount_percent", "-0.001", [PERCENT_RANGE, "Use at most 2 decimal places."]),
    ("discount_percent", BEYOND_28_DIGITS, ["Use at most 2 decimal places."]),
    ("discount_percent", "NaN", ["Special numeric values (nan or infinity) are not permitted."]),
    ("discount_percent", "two", ["Not a valid number."]),
    ("minimum_order_volume", "-1", [VOLUME_RANGE]),
    ("minimum_order_volume", "1e15", [VOLUME_RANGE]),
    ("minimum_order_volume", "0.0001", ["Use at most 3 decimal places."]),
    ("minimum_order_volume", BEYOND_28_DIGITS, ["Use at most 3 decimal places."]),
    ("minimum_order_volume", "1000.000" + "0" * 30 + "1", ["Use at most 3 decimal places."]),
    ("minimum_order_volume", "Infinity", ["Special numeric values (nan or infinity) are not permitted."]),
])
def test_contract_terms_keep_their_messages_and_are_never_rounded(field, value, messages):
    assert _errors(TermsSchema(), _terms(**{field: value})) == {field: messages}
    assert _errors(TermsChangeSchema(), {field: value}) == {field: messages}


def test_a_contracts_terms_errors_stay_under_terms_and_the_fields_name():
    body = {"title": "Frame agreement", "terms": _terms(discount_percent=BEYOND_28_DIGITS)}
    assert _errors(ContractCreateSchema(), body) == {"terms": {"discount_percent": ["Use at most 2 decimal places."]}}


def test_contract_terms_take_json_numbers_and_strings_within_their_places():
    loaded = TermsSchema().load(_terms(discount_percent=12.75, minimum_order_volume="999999999999.999"))
    assert (loaded["discount_percent"], loaded["minimum_order_volume"]) == (
        Decimal("12.75"), Decimal("999999999999.999"))
    loaded = TermsSchema().load(_terms(discount_percent="2.50000", minimum_order_volume="1000.0000000"))
    assert [str(loaded[name]) for name in ("discount_percent", "minimum_order_volume")] == ["2.50", "1000.000"]


# -- the loyalty API's amounts and rates -------------------------------------------------------------------

def _purchase(**values) -> dict:
    return {"contact_id": "6f1c1a52-8d1e-4d43-9f57-5d7d3a1f2c10", "amount": "42.50", "currency": "EUR",
            "occurred_at": "2026-03-14T10:30:00Z", **values}


def _program(**values) -> dict:
    return {"code": "gold", "name": "Gold", "currency": "EUR", "points_per_unit": "1", **values}


NOT_A_STRING = 'Send the number as a decimal string, e.g. "12.50".'
AMOUNT_RANGE = "Must be greater than 0 and less than 10^12."
MONEY_RANGE = "Must be 0 or more and less than 10^12."


@pytest.mark.parametrize(("field", "value", "messages"), [
    ("amount", 42.5, [NOT_A_STRING]),
    ("amount", "0", [AMOUNT_RANGE]),
    ("amount", "1000000000000", [AMOUNT_RANGE]),
    ("amount", "1.23456", ["Use at most 4 decimal places."]),
    ("amount", BEYOND_28_DIGITS, ["Use at most 4 decimal places."]),
    ("amount", "-0.00001", [AMOUNT_RANGE, "Use at most 4 decimal places."]),
    ("amount", "Infinity", ["Special numeric values (nan or infinity) are not permitted."]),
    ("margin", "-1", [MONEY_RANGE]),
    ("margin", 1, [NOT_A_STRING]),
    ("discount", "1000000000000", [MONEY_RANGE]),
    ("discount", "0.00001", ["Use at most 4 decimal places."]),
])
def test_a_purchase_keeps_its_messages(field, value, messages):
    assert _errors(PurchaseCreateSchema(), _purchase(**{field: value})) == {field: messages}


def test_a_return_amount_keeps_its_messages():
    body = {"amount": "0", "occurred_at": "2026-03-15T10:00:00Z"}
    assert _errors(ReturnCreateSchema(), body) == {"amount": [AMOUNT_RANGE]}
    assert _errors(ReturnCreateSchema(), {**body, "amount": 10}) == {"amount": [NOT_A_STRING]}


@pytest.mark.parametrize(("field", "value", "messages"), [
    ("points_per_unit", "1000.00001", ["Must be greater than or equal to 0 and less than or equal to 1000.",
                                      "Use at most 4 decimal places."]),
    ("points_per_unit", 1.5, [NOT_A_STRING]),
    ("margin_rate", "1.0001", ["Must be greater than or equal to 0 and less than or equal to 1."]),
    ("margin_rate", "0.12345", ["Use at most 4 decimal places."]),
])
def test_a_programs_rates_keep_their_messages(field, value, messages):
    assert _errors(ProgramCreateSchema(), _program(**{field: value})) == {field: messages}


def test_a_purchase_amount_with_zeros_past_four_places_loads_as_contacts_purchase_facts_can_keep_it():
    # The loaded amount goes into crm.purchase.recorded as it is; contacts refuses more than 4 places there.
    loaded = PurchaseCreateSchema().load(_purchase(amount="42.500000", margin="0.10000", discount="1.00000"))
    assert [str(loaded[name]) for name in ("amount", "margin", "discount")] == ["42.5000", "0.1000", "1.0000"]
    assert exact_amount(format(loaded["amount"], "f")) == Decimal("42.5")


def test_an_exact_decimals_own_validators_run_after_its_range_and_places():
    class Price(Schema):
        amount = ExactDecimal(2, Decimal(1000), validate=mv.OneOf([Decimal(5), Decimal(10)]))
        listed = ExactDecimal(2, Decimal(1000), validate=[mv.NoneOf([Decimal(7)])])

    assert Price().load({"amount": "10.00", "listed": "8"}) == {"amount": Decimal("10.00"), "listed": Decimal(8)}
    with pytest.raises(ValidationError) as refused:
        Price().load({"amount": "6", "listed": "7"})
    assert set(refused.value.messages) == {"amount", "listed"}
    with pytest.raises(ValidationError) as refused:
        Price().load({"amount": "2000", "listed": "1"})
    assert len(refused.value.messages["amount"]) >= 1
