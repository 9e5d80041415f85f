"""The customer record's pure rules: tags, attribute values, account domains and the free-mail list."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from crm_plugins.mail_domains import is_disposable_mail, is_free_mail
from marshmallow import ValidationError

from services.contacts.accounts import account_values, normalize_domain
from services.contacts.attributes import (
    attribute_filter_args,
    canonical_number,
    filter_value,
    merged,
    typed_value,
    without_attribute_filters,
)
from services.contacts.record_schemas import AccountCreateSchema, AttributeDefinitionCreateSchema
from services.contacts.schemas import ContactCreateSchema, ContactQuerySchema
from services.contacts.tags import normalize_tag, tag_set


def _definition(kind: str, **kw):
    return SimpleNamespace(type=kind, options=kw.get("options", []), max_length=kw.get("max_length"))


# -- tags ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, tag", [(" VIP ", "vip"), ("tier:gold", "tier:gold"), ("a.b_c-d", "a.b_c-d"),
                                      ("0day", "0day"), ("x" * 50, "x" * 50)])
def test_a_tag_is_trimmed_and_lower_cased(raw, tag):
    assert normalize_tag(raw) == tag


@pytest.mark.parametrize("raw", ["", "  ", "two words", "-dash-first", "_x", "x" * 51, "ünïcode", "a/b", "a,b"])
def test_a_tag_outside_the_rule_is_refused(raw):
    with pytest.raises(ValueError):
        normalize_tag(raw)


def test_a_record_keeps_its_tags_sorted_unique_and_at_most_100():
    assert tag_set(["vip", "b2b", "vip"]) == ["b2b", "vip"]
    assert len(tag_set(f"t{i}" for i in range(100))) == 100
    with pytest.raises(ValueError):
        tag_set(f"t{i}" for i in range(101))


# -- attribute values -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, stored", [
    ("19.90", "19.9"), ("0019.90", "19.9"), ("-0.50", "-0.5"), ("100", "100"), ("1000.000", "1000"), (" 7 ", "7"),
    ("-0", "0"), ("0.000", "0"), (42, "42"), (-3, "-3"), ("0.1234567890", "0.123456789"),
    ("999999999999999999.9999999999", "999999999999999999.9999999999"),
])
def test_a_number_is_stored_as_its_exact_canonical_decimal_string(raw, stored):
    assert canonical_number(raw) == stored


@pytest.mark.parametrize("raw", [19.99, 1.0, True, None, [], "1e3", "NaN", "Infinity", "1.", ".5", "+1", "1,5",
                                 "0.12345678901", "1000000000000000000", 10**18, 10**400, "9" * 41])
def test_a_number_that_cannot_be_kept_exactly_is_refused(raw):
    with pytest.raises(ValueError):
        canonical_number(raw)


@pytest.mark.parametrize("kind, kw, raw, stored", [
    ("string", {"max_length": 5}, " hello ", "hello"),
    ("date", {}, "2024-02-29", "2024-02-29"),
    ("boolean", {}, False, False),
    ("enum", {"options": ["gold", "silver"]}, " gold", "gold"),
])
def test_values_of_each_type_are_stored_in_one_form(kind, kw, raw, stored):
    assert typed_value(_definition(kind, **kw), raw) == stored


@pytest.mark.parametrize("kind, kw, raw", [
    ("string", {"max_length": 5}, "toolong"), ("string", {}, ""), ("string", {}, 5), ("string", {}, "x" * 256),
    ("date", {}, "2023-02-29"), ("date", {}, "2024-2-9"), ("date", {}, "20240229"), ("date", {}, 20240229),
    ("boolean", {}, "true"), ("boolean", {}, 1), ("enum", {"options": ["gold"]}, "GOLD"), ("enum", {"options": ["1"]}, 1),
])
def test_values_that_do_not_fit_their_type_are_refused(kind, kw, raw):
    with pytest.raises(ValueError):
        typed_value(_definition(kind, **kw), raw)


def test_filter_text_is_read_in_the_attributes_type():
    assert filter_value(_definition("boolean"), "true") is True
    assert filter_value(_definition("boolean"), "false") is False
    assert filter_value(_definition("number"), "19.90") == "19.9"
    with pytest.raises(ValueError):
        filter_value(_definition("boolean"), "1")


def test_a_patch_of_attributes_sets_and_removes_values():
    assert merged({"a": "1", "b": True}, {"a": "2", "b": None, "c": "x", "d": None}) == {"a": "2", "c": "x"}


def test_attr_query_arguments_are_set_apart_and_checked_by_name():
    query = {"limit": "5", "attr.tier": "gold", "attr.score": "1"}
    assert without_attribute_filters(query) == {"limit": "5"}
    assert attribute_filter_args(query) == {"tier": "gold", "score": "1"}
    with pytest.raises(ValidationError) as caught:
        without_attribute_filters({"attr.Tier": "x"})
    assert set(caught.value.messages) == {"attr.Tier"}
    with pytest.raises(ValidationError) as caught:
        without_attribute_filters({f"attr.a{i}": "x" for i in range(11)})
    assert set(caught.value.messages) == {"attr"}


def test_the_contact_query_schema_collects_attr_arguments_without_declaring_them():
    loaded = ContactQuerySchema().load({"attr.tier": "gold", "tag": ["VIP"]})
    assert loaded["attr"] == {"tier": "gold"} and loaded["tag"] == ["vip"]
    assert "attr" not in ContactQuerySchema().load({})


def test_an_enum_definition_needs_unique_options_and_only_an_enum_has_them():
    schema = AttributeDefinitionCreateSchema()
    assert schema.load({"name": "tier", "type": "enum", "options": [" gold", "silver"]})["options"] == ["gold", "silver"]
    for body, field in [({"name": "tier", "type": "enum"}, "options"),
                        ({"name": "tier", "type": "enum", "options": ["a", "a"]}, "options"),
                        ({"name": "tier", "type": "date", "options": ["a"]}, "options"),
                        ({"name": "tier", "type": "boolean", "max_length": 3}, "max_length"),
                        ({"name": "tier\n", "type": "string"}, "name")]:
        with pytest.raises(ValidationError) as caught:
            schema.load(body)
        assert set(caught.value.messages) == {field}


# -- accounts -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, domain", [
    ("Acme.Example", "acme.example"), (" acme.example. ", "acme.example"), ("Bücher.example", "xn--bcher-kva.example"),
    ("xn--bcher-kva.example", "xn--bcher-kva.example"), ("ＡＣＭＥ.example", "acme.example"),
])
def test_an_account_domain_is_kept_lower_case_in_its_idna_form(raw, domain):
    assert normalize_domain(raw) == domain


@pytest.mark.parametrize("raw", ["", "acme", "http://acme.example", "acme.example/x", "ann@acme.example",
                                 "[192.0.2.1]", "☃.net", "ab--cd.example", "gmail.com", "mail.yahoo.co.uk", "web.de"])
def test_a_domain_that_is_not_a_company_domain_is_refused(raw):
    with pytest.raises(ValueError):
        normalize_domain(raw)


def test_a_filter_may_name_a_free_mail_domain():
    assert normalize_domain("GMAIL.com", allow_free_mail=True) == "gmail.com"


def test_the_address_block_is_spread_over_its_columns_and_null_clears_it():
    assert account_values({"name": "Acme", "address": {"city": "Berlin"}}) == {"name": "Acme", "city": "Berlin"}
    assert account_values({"address": None}) == dict.fromkeys(("street", "city", "postal_code", "region", "country"))


def test_an_account_country_is_an_assigned_iso_code():
    assert AccountCreateSchema().load({"name": "A", "address": {"country": "gb"}})["address"]["country"] == "GB"
    for code in ("UK", "XX", "DEU", "D"):
        with pytest.raises(ValidationError):
            AccountCreateSchema().load({"name": "A", "address": {"country": code}})


@pytest.mark.parametrize("domain, free", [("gmail.com", True), ("yahoo.co.uk", True), ("hotmail.de", True),
                                          ("web.de", True), ("web.com", False), ("acme.example", False),
                                          ("gmail.acme.example", False), ("eu.mail.ru", True)])
def test_the_free_mail_list_is_shared_with_the_lead_scorer(domain, free):
    assert is_free_mail(domain) is free


def test_disposable_mail_is_told_apart():
    assert is_disposable_mail("mailinator.com") and not is_disposable_mail("gmail.com")


def test_a_body_names_at_most_as_many_attributes_as_can_be_defined():
    assert len(ContactCreateSchema().load({"email": "a@example.com",
                                           "attributes": {f"a{i}": "x" for i in range(200)}})["attributes"]) == 200
    with pytest.raises(ValidationError) as caught:
        ContactCreateSchema().load({"email": "a@example.com", "attributes": {f"a{i}": "x" for i in range(201)}})
    assert set(caught.value.messages) == {"attributes"}
