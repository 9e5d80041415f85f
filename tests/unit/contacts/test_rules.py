"""The pure rules of the contacts service: normalisation, matching, change detection, entity tags."""
from __future__ import annotations

import uuid

import pytest

from services.common.emails import normalize_email
from services.common.etags import NO_PRECONDITION, Precondition, etag
from services.common.problems import PreconditionFailed
from services.contacts.service import (
    changed_values,
    gaps_to_fill,
    profile_from_lead,
)


def test_addresses_differing_only_in_case_and_spaces_normalise_alike():
    assert normalize_email("  Ann.Lee@Example.COM ") == normalize_email("ann.lee@example.com") == "ann.lee@example.com"


def test_a_lead_offers_its_trimmed_non_blank_profile_values():
    lead = {"lead_id": uuid.uuid4(), "email": "a@example.com", "first_name": " Ann ", "last_name": "",
            "company": "   ", "job_title": None, "phone": "+1 555", "score": 70, "source": "web"}
    assert profile_from_lead(lead) == {"first_name": "Ann", "phone": "+1 555"}


def test_lead_values_longer_than_a_column_are_clipped():
    offered = profile_from_lead({"first_name": "x" * 150, "company": "y" * 300})
    assert offered == {"first_name": "x" * 100, "company": "y" * 200}


def test_matching_fills_empty_fields_and_never_overwrites():
    current = {"email": "ann@example.com", "first_name": "Ann", "last_name": None, "company": "", "phone": "+1"}
    offered = {"first_name": "Annie", "last_name": "Lee", "company": "Acme", "phone": "+2", "job_title": "CTO"}
    assert gaps_to_fill(current, offered) == {"last_name": "Lee", "company": "Acme", "job_title": "CTO"}


def test_matching_ignores_fields_outside_the_profile():
    assert gaps_to_fill({"email": None}, {"email": "other@example.com"}) == {}


def test_only_values_that_differ_count_as_changes():
    current = {"email": "ann@example.com", "first_name": "Ann", "company": None}
    requested = {"email": "ann@example.com", "first_name": "Annie", "company": None}
    assert changed_values(current, requested) == {"first_name": "Annie"}


def test_clearing_a_field_is_a_change():
    assert changed_values({"company": "Acme"}, {"company": None}) == {"company": None}


def test_no_if_match_always_matches_and_named_versions_must_include_the_current_one():
    assert NO_PRECONDITION.holds(7)
    assert Precondition.of(6, 7).holds(7)
    assert not Precondition.of(6).holds(7)
    assert not Precondition.of().holds(7)


def test_if_match_is_optional_on_contacts_but_a_stale_one_is_412():
    NO_PRECONDITION.check(3, required=False, what="contact x")
    with pytest.raises(PreconditionFailed) as stale:
        Precondition.of(2).check(3, required=False, what="contact x")
    assert stale.value.status == 412 and stale.value.extra == {"current_version": 3}


def test_the_etag_is_the_version_as_a_weak_tag():
    assert etag(3) == 'W/"3"'


@pytest.mark.parametrize("header, kind, versions", [
    (None, "missing", set()),
    ("  ", "missing", set()),
    ("*", "any", set()),
    ('W/"3"', "versions", {3}),
    ('"3"', "versions", {3}),
    (' W/"3" , W/"5"', "versions", {3, 5}),
    ('W/"abc"', "versions", set()),
    ("3", "versions", set()),
])
def test_if_match_is_parsed_once_into_any_these_versions_or_missing(header, kind, versions):
    parsed = Precondition.from_header(header)
    assert (parsed.kind, parsed.versions) == (kind, frozenset(versions))
