"""E-mail normalisation (issue 7 §2): NFKC on the whole address, IDNA (UTS #46) on the domain.

Look-alike spellings of one address — full-width letters, compatibility characters, upper case, a Unicode
domain and its xn-- form — normalise to one key, so they cannot make a second contact or lead; two different
addresses never normalise to the same key.
"""
from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st
from marshmallow import ValidationError

from services.common.emails import InvalidEmail, email_domain, normalize_email, validate_email

_LOCAL = st.text(alphabet=string.ascii_lowercase + string.digits + "._+-", min_size=1, max_size=20).filter(
    lambda s: s[0] not in ".-" and s[-1] not in ".-" and ".." not in s)
_LABEL = st.from_regex(r"\A[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?\Z").filter(lambda s: s[2:4] != "--")
_ASCII_ADDRESS = st.builds(lambda local, labels, tld: f"{local}@{'.'.join(labels)}.{tld}", _LOCAL,
                           st.lists(_LABEL, min_size=1, max_size=3), st.sampled_from(["com", "example", "de"]))
_UNICODE_LABEL = st.text(alphabet="abcdefghijklmnopqrstuvwxyzäöüéßçñøåæ", min_size=1, max_size=12)


def _full_width(text: str) -> str:
    """The full-width (FF01-FF5E) spelling of printable ASCII, as some input methods type it."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" and c != "@" else c for c in text)


@pytest.mark.parametrize("variant, canonical", [
    ("  Ann.Lee@Example.COM ", "ann.lee@example.com"),
    ("ａｎｎ@example.com", "ann@example.com"),  # full-width local part
    ("ann@ｅｘａｍｐｌｅ．ｃｏｍ", "ann@example.com"),  # full-width domain and full stop
    ("ann@Bücher.Example", "ann@xn--bcher-kva.example"),
    ("ann@XN--BCHER-KVA.example", "ann@xn--bcher-kva.example"),
    ("ann@bu\u0308cher.example", "ann@xn--bcher-kva.example"),  # u + combining diaeresis
    ("\ufb01ona@example.com", "fiona@example.com"),  # the "fi" ligature
    ("ann@faß.de", "ann@xn--fa-hia.de"),  # IDNA 2008 keeps ß (not "fass.de", another domain)
    ("ann@[192.0.2.1]", "ann@[192.0.2.1]"),  # an address literal is not a host name
])
def test_look_alike_spellings_normalise_to_one_key(variant, canonical):
    assert normalize_email(variant) == canonical


def test_a_cyrillic_look_alike_domain_is_another_domain_and_does_not_collide():
    assert normalize_email("ann@exаmple.com") == "ann@xn--exmple-4nf.com"  # U+0430, not Latin a
    assert normalize_email("ann@exаmple.com") != normalize_email("ann@example.com")


@pytest.mark.parametrize("address", ["ann@☃.net", "ann@ab--cd.example", "ann@xn--zzzz.com", "ann@a..b",
                                     "no-at-sign", "ann@", "@example.com"])
def test_an_address_whose_domain_fails_idna_is_refused(address):
    with pytest.raises(InvalidEmail):
        normalize_email(address)
    with pytest.raises(ValidationError):
        validate_email(address)


def test_an_address_too_long_once_normalised_is_refused():
    # U+FDFA is one character that NFKC spells out in 18; the key must still fit its 254-character column.
    with pytest.raises(InvalidEmail):
        normalize_email("\ufdfa" * 14 + "@example.com")
    assert len(normalize_email("a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + ".example")) <= 254


def test_the_domain_of_an_address_is_its_ascii_form():
    assert email_domain("Ann@Bücher.Example") == "xn--bcher-kva.example"


@given(_ASCII_ADDRESS)
def test_an_ascii_address_normalises_as_it_always_did(address):
    # The stored keys of ASCII addresses do not change, so existing rows need no migration.
    assert normalize_email(f" {address.upper()} ") == address.lower()


@given(_ASCII_ADDRESS)
def test_normalising_is_idempotent_and_blind_to_width_and_case(address):
    key = normalize_email(address)
    assert normalize_email(key) == key
    assert normalize_email(_full_width(address)) == key
    assert normalize_email(address.upper()) == key


@given(_LOCAL, _UNICODE_LABEL)
def test_a_unicode_domain_and_its_punycode_are_one_key(local, label):
    try:
        key = normalize_email(f"{local}@{label}.example")
    except InvalidEmail:
        return  # a label IDNA refuses (e.g. leading combining mark) is refused in every spelling
    domain = key.rpartition("@")[2]
    assert domain.isascii()
    assert normalize_email(f"{local}@{domain.upper()}") == key
    assert normalize_email(key) == key


@given(_ASCII_ADDRESS, _ASCII_ADDRESS)
def test_different_addresses_never_share_a_key(first, second):
    if first.lower() != second.lower():
        assert normalize_email(first) != normalize_email(second)
