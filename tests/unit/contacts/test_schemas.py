"""Request validation of the contacts API, without a database or an app."""
from __future__ import annotations

import pytest
from marshmallow import ValidationError

from services.contacts.schemas import (
    ContactCreateSchema,
    ContactQuerySchema,
    ContactUpdateSchema,
)


def _errors(schema, data) -> dict:
    with pytest.raises(ValidationError) as caught:
        schema.load(data)
    return caught.value.messages


def test_an_email_is_required_to_create_a_contact():
    assert set(_errors(ContactCreateSchema(), {"first_name": "Ann"})) == {"email"}


@pytest.mark.parametrize("email", ["ann", "ann@", "@example.com", "ann example@example.com", ""])
def test_an_address_that_is_not_an_email_is_refused(email):
    assert set(_errors(ContactCreateSchema(), {"email": email})) == {"email"}


def test_unknown_fields_are_refused_by_name():
    errors = _errors(ContactCreateSchema(), {"email": "ann@example.com", "nickname": "A", "vip": True})
    assert set(errors) == {"nickname", "vip"}


@pytest.mark.parametrize("field, limit", [("first_name", 100), ("last_name", 100), ("company", 200),
                                          ("job_title", 200)])
def test_text_longer_than_its_column_is_refused(field, limit):
    schema = ContactCreateSchema()
    assert schema.load({"email": "ann@example.com", field: "x" * limit})[field] == "x" * limit
    assert set(_errors(schema, {"email": "ann@example.com", field: "x" * (limit + 1)})) == {field}


def test_an_email_longer_than_254_characters_is_refused():
    email = "a" * 64 + "@" + ".".join(["b" * 60] * 4) + ".com"
    assert set(_errors(ContactCreateSchema(), {"email": email})) == {"email"}


def test_surrounding_spaces_are_removed_before_validation():
    data = ContactCreateSchema().load({"email": "  Ann@Example.com ", "first_name": " Ann ", "phone": " +1 555 0100 "})
    assert data == {"email": "Ann@Example.com", "first_name": "Ann", "phone": "+1 555 0100"}


def test_blank_text_is_refused_and_null_is_accepted():
    schema = ContactCreateSchema()
    assert set(_errors(schema, {"email": "ann@example.com", "company": "   "})) == {"company"}
    assert schema.load({"email": "ann@example.com", "company": None})["company"] is None


@pytest.mark.parametrize("phone", ["call me", "12", "+49 (30) 1234-567x"])
def test_a_phone_number_must_look_like_one(phone):
    assert set(_errors(ContactCreateSchema(), {"email": "ann@example.com", "phone": phone})) == {"phone"}


def test_an_update_takes_only_the_fields_it_names():
    assert ContactUpdateSchema().load({"company": "Acme"}) == {"company": "Acme"}
    assert ContactUpdateSchema().load({}) == {}


def test_an_update_cannot_clear_the_email_but_can_clear_other_fields():
    assert set(_errors(ContactUpdateSchema(), {"email": None})) == {"email"}
    assert ContactUpdateSchema().load({"phone": None}) == {"phone": None}


def test_an_update_refuses_unknown_and_read_only_fields():
    assert set(_errors(ContactUpdateSchema(), {"version": 3, "id": "x"})) == {"version", "id"}


def test_search_arguments_default_to_the_first_page():
    assert ContactQuerySchema().load({}) == {"limit": 50, "cursor": None, "sort": None}


def test_a_search_term_is_trimmed_and_bounded():
    assert ContactQuerySchema().load({"q": "  acme "})["q"] == "acme"
    assert set(_errors(ContactQuerySchema(), {"q": "x" * 201})) == {"q"}


@pytest.mark.parametrize("limit", [0, 201, -1])
def test_a_page_size_outside_1_to_200_is_refused(limit):
    assert set(_errors(ContactQuerySchema(), {"limit": limit})) == {"limit"}
