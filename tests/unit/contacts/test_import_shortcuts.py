"""The import's shortcut past the API's validators: every value comes out exactly as the validators make it."""
from __future__ import annotations

import string

from hypothesis import example, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError, validate

from services.common.emails import InvalidEmail, normalize_email
from services.contacts import import_rows
from services.contacts.imports import TARGETS


def _checked_fully(target: str, value: str) -> tuple[dict, list]:
    """What a trimmed, non-empty cell came to before the shortcut: each validator in turn, then the address key."""
    values, errors = {}, []
    try:
        for validator in import_rows._VALIDATORS[target]:
            validator(value)
        if target == "email":
            values["email_normalized"] = normalize_email(value)
        values[target] = value
    except ValidationError as exc:
        errors.append((target, " ".join(exc.messages)))
    except InvalidEmail as exc:
        errors.append((target, str(exc)))
    return values, errors


def _read(target: str, cell: str) -> tuple[dict, list]:
    return import_rows.RowReader(columns={target: 0}, width=1).read([cell])


_LABEL = st.text(alphabet=string.ascii_letters + string.digits + "-", min_size=1, max_size=66)
_DOMAIN = st.one_of(
    st.lists(_LABEL, min_size=1, max_size=4).map(".".join),
    st.text(alphabet="abcXYZ019.-_ üßſK[]", max_size=30),
    st.sampled_from(["example.com", "xn--bcher-kva.example", "ab--cd.example", "xn--zzzz.com", "a..b",
                     "[192.0.2.1]", "localhost", "example.c", "example.123", "-a.com", "a-.com", "ＥＸＡＭＰＬＥ.com"]),
)
_LOCAL = st.one_of(
    st.text(alphabet=string.ascii_letters + string.digits + "._+-", min_size=1, max_size=70),
    st.text(alphabet="aZ09._+-!#$%&'*/=?^`{|}~\"\\ (),:;<>@ſKéＡ", max_size=20),
)
_ADDRESSES = st.one_of(
    st.emails(),
    st.builds(lambda local, domain: f"{local}@{domain}", _LOCAL, _DOMAIN),
    st.builds(lambda local, domain, pad: f"{pad}{local}@{domain}{pad}", _LOCAL, _DOMAIN, st.sampled_from(["", " ", "\t"])),
    st.text(max_size=40),
)


@settings(max_examples=1500)
@given(_ADDRESSES)
@example("Ann@Example.COM")
@example("x" * 64 + "@" + ".".join(["a" * 63] * 3) + ".com")  # 256 characters: over the limit
@example("ann@" + "a" * 64 + ".com")  # a label one character too long
@example("ann@ab--cd.example")  # passes validate.Email; IDNA refuses the domain
@example("ſ@example.com")  # matched by [a-z] under IGNORECASE; non-ASCII all the same
@example("ann..lee@example.com")
def test_an_address_comes_out_of_the_shortcut_as_out_of_the_validators(address):
    value = address.strip()
    if value:
        assert _read("email", address) == _checked_fully("email", value)


@given(st.text(alphabet=string.digits + " +()./-x#", max_size=60))
@example("+" + "1" * 49)
@example("+" + "1" * 50)
def test_a_phone_number_comes_out_of_the_shortcut_as_out_of_the_validators(cell):
    value = cell.strip()
    if value:
        assert _read("phone", cell) == _checked_fully("phone", value)


@given(st.sampled_from(["first_name", "last_name", "company", "job_title"]), st.text(max_size=220))
@example("first_name", "x" * 100)
@example("first_name", "x" * 101)
@example("company", "x" * 201)
def test_a_text_field_comes_out_of_the_shortcut_as_out_of_the_validators(target, cell):
    value = cell.strip()
    if value:
        assert _read(target, cell) == _checked_fully(target, value)


@given(st.from_regex(import_rows._PLAIN_ADDRESS, fullmatch=True))
def test_every_plain_address_passes_the_apis_address_validator(address):
    validate.Email()(address)


def test_every_field_has_a_shortcut_and_a_validator_without_one_turns_it_off():
    assert all(import_rows._shortcut(import_rows._VALIDATORS[target]) is not None for target in TARGETS)
    assert import_rows._shortcut([validate.Length(max=5), validate.OneOf(["a"])]) is None
    assert import_rows._shortcut([validate.Length(min=2, max=5)]) is None  # a one-character value must be checked
