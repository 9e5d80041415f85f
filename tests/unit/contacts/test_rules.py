"""The pure rules of the contacts service: normalisation, matching, change detection, entity tags."""
from __future__ import annotations

import uuid

import pytest

from services.common.emails import normalize_email
from services.contacts.api import etag, versions_from_if_match
from services.contacts.service import (
    changed_values,
    gaps_to_fill,
    profile_from_lead,
    version_matches,
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


def test_no_expected_version_always_matches():
    assert version_matches(7, None)
    assert version_matches(7, {6, 7})
    assert not version_matches(7, {6})
    assert not version_matches(7, frozenset())


def test_the_etag_is_the_version_as_a_weak_tag():
    assert etag(3) == 'W/"3"'


@pytest.mark.parametrize("header, versions", [
    (None, None),
    ("*", None),
    ('W/"3"', {3}),
    ('"3"', {3}),
    (' W/"3" , W/"5"', {3, 5}),
    ('W/"abc"', set()),
    ("3", set()),
])
def test_if_match_names_the_versions_it_accepts(header, versions):
    parsed = versions_from_if_match(header)
    assert parsed == (None if versions is None else frozenset(versions))
