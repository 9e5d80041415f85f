"""A contact as a vCard 4.0 (RFC 6350), read back with vobject, an independent parser."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest
import vobject

from services.contacts import vcard

UPDATED = datetime(2026, 3, 1, 9, 30, 5, tzinfo=timezone.utc)


def _contact(**fields) -> dict:
    return {"id": uuid.UUID("0b6e2c1e-8d9e-4f53-9d1a-0c2b8f0e5a11"), "email": "ann@example.com", "first_name": None,
            "last_name": None, "company": None, "job_title": None, "phone": None, "updated_at": UPDATED, **fields}


@pytest.mark.parametrize("first, last, company", [
    ("Ann", "Lee", "Acme"),
    ("Ann, Jr.", "O;Brien", "Acme, Inc.; Holdings"),
    ("Zoë", "Łukasiewicz-Ñúñez", "Bücher GmbH"),
    ("Back\\slash", "李", "株式会社 " + "長い名前" * 30),
])
def test_the_vcard_reads_back_to_the_same_name_address_phone_and_company(first, last, company):
    text = vcard.vcard(_contact(first_name=first, last_name=last, company=company, job_title="CTO, R&D",
                                phone="+1 (555) 010-0100", email="zoë@bücher.example"))
    card = vobject.readOne(text)
    assert card.version.value == "4.0"
    assert card.fn.value == f"{first} {last}"
    assert (card.n.value.family, card.n.value.given) == (last, first)
    assert card.email.value == "zoë@bücher.example"
    assert card.tel.value == "+1 (555) 010-0100"
    assert card.org.value == [company]
    assert card.title.value == "CTO, R&D"
    assert card.uid.value == "urn:uuid:0b6e2c1e-8d9e-4f53-9d1a-0c2b8f0e5a11"
    assert card.rev.value == "20260301T093005Z"


def test_lines_are_folded_at_75_octets_without_splitting_a_character_and_end_with_crlf():
    text = vcard.vcard(_contact(first_name="é" * 100, last_name="x"))
    assert text.endswith("END:VCARD\r\n") and "\n" not in text.replace("\r\n", "")
    lines = text.split("\r\n")[:-1]
    assert max(len(line.encode("utf-8")) for line in lines) <= 75
    fn_at = next(index for index, line in enumerate(lines) if line.startswith("FN:"))
    # 205 octets: the first line and two continuations, each starting with a space.
    assert [line[:1] for line in lines[fn_at:fn_at + 4]] == ["F", " ", " ", "N"]
    assert vobject.readOne(text).fn.value == "é" * 100 + " x"


def test_without_a_name_the_formatted_name_is_the_company_then_the_address():
    assert vobject.readOne(vcard.vcard(_contact(company="Acme"))).fn.value == "Acme"
    card = vobject.readOne(vcard.vcard(_contact()))
    assert card.fn.value == "ann@example.com"
    assert not hasattr(card, "tel") and not hasattr(card, "org") and not hasattr(card, "title")


def test_escaping_covers_backslash_comma_semicolon_and_newline():
    assert vcard.escape("a\\b,c;d\ne") == "a\\\\b\\,c\\;d\\ne"


@pytest.mark.parametrize("accept, wanted", [
    ("text/vcard", True), ("text/vcard;q=0.9, application/json;q=0.5", True), ("*/*", False),
    ("application/json", False), ("application/json, text/vcard", False), ("text/html", False), ("", False),
])
def test_a_vcard_is_sent_only_to_a_caller_that_prefers_one(accept, wanted):
    from werkzeug.datastructures import MIMEAccept
    from werkzeug.http import parse_accept_header

    assert vcard.wanted(parse_accept_header(accept, MIMEAccept)) is wanted
