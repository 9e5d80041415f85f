"""Validation of contract terms and partner input by the request schemas (no I/O)."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from marshmallow import ValidationError

from services.partners.schemas import (
    ContractCreateSchema,
    PartnerCreateSchema,
    PartnerUpdateSchema,
    TermsChangeSchema,
    TermsSchema,
    TermsVersionSchema,
)

TERMS = {
    "payment_terms_days": 30, "discount_percent": "2.5", "delivery_lead_time_days": 14,
    "minimum_order_volume": "1000", "currency": "EUR", "effective_from": "2026-01-01",
    "effective_to": "2026-12-31", "auto_renew": True, "notice_period_days": 60,
}


def _errors(schema, data) -> dict:
    with pytest.raises(ValidationError) as caught:
        schema.load(data)
    return caught.value.messages


def test_complete_terms_load_with_exact_decimals_and_dates():
    terms = TermsSchema().load(TERMS)
    assert terms["discount_percent"] == Decimal("2.5") and isinstance(terms["discount_percent"], Decimal)
    assert terms["minimum_order_volume"] == Decimal(1000)
    assert (terms["effective_from"], terms["effective_to"]) == (date(2026, 1, 1), date(2026, 12, 31))


def test_a_json_number_becomes_the_decimal_it_reads_as_not_a_float():
    terms = TermsSchema().load({**TERMS, "discount_percent": 0.1, "minimum_order_volume": 1234.567})
    assert terms["discount_percent"] == Decimal("0.1")
    assert terms["minimum_order_volume"] == Decimal("1234.567")


def test_optional_terms_default_to_open_ended_without_renewal_or_notice():
    required_only = {k: v for k, v in TERMS.items() if k not in ("effective_to", "auto_renew", "notice_period_days")}
    terms = TermsSchema().load(required_only)
    assert (terms["effective_to"], terms["auto_renew"], terms["notice_period_days"]) == (None, False, 0)


def test_missing_terms_are_each_named():
    assert set(_errors(TermsSchema(), {})) == {"payment_terms_days", "discount_percent", "delivery_lead_time_days",
                                                "minimum_order_volume", "currency", "effective_from"}


@pytest.mark.parametrize("field, value", [
    ("discount_percent", "-0.01"), ("discount_percent", "100.01"), ("discount_percent", "2.125"),
    ("discount_percent", "NaN"), ("discount_percent", "Infinity"), ("discount_percent", "two"),
    ("minimum_order_volume", "-1"), ("minimum_order_volume", "0.0001"), ("minimum_order_volume", "1e15"),
    ("payment_terms_days", -1), ("payment_terms_days", 366), ("payment_terms_days", 30.5), ("payment_terms_days", "30"),
    ("payment_terms_days", True), ("delivery_lead_time_days", -3), ("notice_period_days", 731),
    ("currency", "eur"), ("currency", "EURO"), ("currency", "E1R"), ("currency", None),
    ("effective_from", "2026-02-30"), ("effective_from", "2026-01-01T00:00:00Z"), ("effective_to", "tomorrow"),
    ("auto_renew", "maybe"),
])
def test_an_invalid_term_is_named(field, value):
    assert set(_errors(TermsSchema(), {**TERMS, field: value})) == {field}


@pytest.mark.parametrize("field, value", [
    ("discount_percent", "0"), ("discount_percent", "100"), ("discount_percent", "100.00"), ("discount_percent", "12.75"),
    ("minimum_order_volume", "0"), ("minimum_order_volume", "999999999999.999"), ("payment_terms_days", 0),
    ("payment_terms_days", 365), ("notice_period_days", 0), ("currency", "JPY"),
])
def test_boundary_values_are_accepted(field, value):
    TermsSchema().load({**TERMS, field: value})


def test_the_end_of_the_period_must_come_after_its_start():
    assert _errors(TermsSchema(), {**TERMS, "effective_to": "2026-01-01"}) == {"effective_to": ["Must be after effective_from."]}
    assert set(_errors(TermsSchema(), {**TERMS, "effective_to": "2025-06-30"})) == {"effective_to"}


def test_an_auto_renewing_contract_needs_an_end_date():
    assert set(_errors(TermsSchema(), {**TERMS, "effective_to": None, "auto_renew": True})) == {"effective_to"}
    TermsSchema().load({**TERMS, "effective_to": None, "auto_renew": False})


def test_unknown_fields_such_as_a_version_are_refused():
    assert _errors(TermsSchema(), {**TERMS, "version": 7}) == {"version": ["Unknown field."]}


def test_a_change_names_only_what_changes_and_fills_no_defaults():
    assert TermsChangeSchema().load({"payment_terms_days": 45}) == {"payment_terms_days": 45}
    assert TermsChangeSchema().load({"effective_to": None}) == {"effective_to": None}


def test_an_empty_change_is_refused_and_a_change_is_validated_like_full_terms():
    assert "_schema" in _errors(TermsChangeSchema(), {})
    assert set(_errors(TermsChangeSchema(), {"discount_percent": "101", "currency": "usd"})) == {"discount_percent", "currency"}
    assert set(_errors(TermsChangeSchema(), {"effective_from": "2026-05-01", "effective_to": "2026-04-01"})) == {"effective_to"}


def test_contract_errors_nest_the_term_fields_under_terms():
    errors = _errors(ContractCreateSchema(), {"title": "", "terms": {**TERMS, "currency": "eu"}})
    assert errors == {"title": errors["title"], "terms": {"currency": errors["terms"]["currency"]}}


def test_terms_are_shown_with_decimal_strings():
    shown = TermsVersionSchema().dump({**TermsSchema().load(TERMS), "discount_percent": Decimal("2.50"), "version": 1,
                                       "created_at": None, "changed_by": "k"})
    assert shown["discount_percent"] == "2.50" and shown["minimum_order_volume"] == "1000"
    assert shown["effective_from"] == "2026-01-01"


def test_partner_input_is_trimmed_and_checked():
    assert PartnerCreateSchema().load({"name": "  Acme ", "type": "reseller"}) == \
        {"name": "Acme", "type": "reseller", "status": "prospect", "country": None}
    assert set(_errors(PartnerCreateSchema(), {"name": " ", "type": "broker", "country": "de"})) == {"name", "type", "country"}
    assert set(_errors(PartnerUpdateSchema(), {"status": "closed", "type": None})) == {"status", "type"}
    assert PartnerUpdateSchema().load({"status": "terminated", "country": None}) == {"status": "terminated", "country": None}
