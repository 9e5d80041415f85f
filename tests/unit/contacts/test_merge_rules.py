"""The pure rules of duplicates and merges, and the guard that no table naming a contact is left out of a merge."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import UniqueConstraint

from services.common.identity import generate_keypair
from services.common.problems import Unprocessable
from services.common.settings import SettingsError, from_env
from services.contacts import duplicates, merges
from services.contacts.models import Base as ContactsBase
from services.leads.models import Base as LeadsBase
from services.loyalty.models import Base as LoyaltyBase

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


# -- every table with a contact_id has a merge rule -------------------------------------------------------------

def _tables_naming_a_contact(base) -> set[str]:
    # `subject_id` is how the termination kit's tables name a contact (in the contacts service).
    return {table.name for table in base.metadata.sorted_tables if {"contact_id", "subject_id"} & set(table.c.keys())}


def test_every_contacts_table_naming_a_contact_is_moved_combined_or_kept_by_a_merge():
    rules = {"moved": merges.MOVED, "combined": merges.COMBINED, "kept": merges.KEPT}
    tables = _tables_naming_a_contact(ContactsBase)
    unruled = tables - merges.MOVED - merges.COMBINED - merges.KEPT
    assert not unruled, (f"{sorted(unruled)} name a contact but services/contacts/merges.py has no rule for them: "
                         "add each to MOVED (one UPDATE re-points it), COMBINED (with code) or KEPT")
    for name, ruled in rules.items():
        assert ruled <= tables, f"{name} names tables without a contact_id: {sorted(ruled - tables)}"
    assert not (merges.MOVED & merges.COMBINED or merges.MOVED & merges.KEPT or merges.COMBINED & merges.KEPT)


def test_a_table_moved_by_one_update_cannot_clash_on_its_contact_id():
    # A unique key over contact_id would make the UPDATE fail when both contacts have a row: such a table needs
    # a rule of its own (COMBINED), like the purchase metrics.
    for table in merges.moved_tables():
        keys = [table.primary_key] + [c for c in table.constraints if isinstance(c, UniqueConstraint)]
        keys += [index for index in table.indexes if index.unique]
        clashing = [key for key in keys if "contact_id" in {column.name for column in key.columns}]
        assert not clashing, f"{table.name}: a unique key includes contact_id; give it a rule in COMBINED"


def test_the_other_services_keep_contact_ids_where_their_merge_handlers_look():
    # services/leads/merges.py re-points leads.contact_id; services/loyalty/merges.py members.contact_id, and
    # records the survivor in frozen_contacts when a merged person was terminated (freezes.follow_merge).
    assert _tables_naming_a_contact(LeadsBase) == {"leads"}
    assert _tables_naming_a_contact(LoyaltyBase) == {"members", "frozen_contacts"}


# -- the merged record ----------------------------------------------------------------------------------------

def _consent(status, at, source="web"):
    return {"status": status, "occurred_at": at.isoformat(), "source": source, "text_version": None}


def test_the_survivors_values_win_and_its_empty_fields_are_filled():
    account = uuid.uuid4()
    survivor = {"first_name": "Ann", "last_name": "", "company": None, "phone": "+1", "account_id": None,
                "job_title": None, "origin_lead_id": None}
    merged = {"first_name": "Annie", "last_name": "Lee", "company": "Acme", "phone": "+2", "account_id": account,
              "job_title": None, "origin_lead_id": None}
    assert merges.merged_fields(survivor, merged) == {"last_name": "Lee", "company": "Acme", "account_id": account}


def test_tags_are_united_and_attributes_kept_survivor_first():
    changes = merges.merged_fields({"tags": ["vip", "b2b"], "attributes": {"size": "L"}},
                                   {"tags": ["a", "vip"], "attributes": {"size": "M", "shoe": 38}})
    assert changes == {"tags": ["a", "b2b", "vip"], "attributes": {"size": "L", "shoe": 38}}


def test_a_terminated_person_stays_terminated_from_the_earlier_termination():
    earlier, later = T0 - timedelta(days=3), T0
    active = {"status": "active", "terminated_at": None}
    assert merges.merged_fields(active, {"status": "terminated", "terminated_at": later}) == {
        "status": "terminated", "terminated_at": later}
    assert merges.merged_fields({"status": "terminated", "terminated_at": later},
                                {"status": "terminated", "terminated_at": earlier}) == {"terminated_at": earlier}
    assert merges.merged_fields({"status": "terminated", "terminated_at": earlier}, active) == {}


def test_nothing_changes_when_the_merged_contact_adds_nothing():
    survivor = {"first_name": "Ann", "tags": ["vip"], "attributes": {"a": 1},
                "consents": {"email:marketing": _consent("granted", T0)}}
    merged = {"first_name": "Bea", "tags": ["vip"], "attributes": {"a": 2},
              "consents": {"email:marketing": _consent("withdrawn", T0 - timedelta(days=1))}}
    assert merges.merged_fields(survivor, merged) == {}


def test_per_channel_and_purpose_the_newer_consent_wins_and_a_withdrawal_wins_a_tie():
    survivor = {"email:marketing": _consent("granted", T0), "sms:marketing": _consent("granted", T0),
                "post:marketing": _consent("withdrawn", T0 + timedelta(days=2))}
    merged = {"email:marketing": _consent("withdrawn", T0 + timedelta(hours=1), "call"),
              "sms:marketing": _consent("withdrawn", T0, "call"),
              "post:marketing": _consent("granted", T0 + timedelta(days=1)),
              "push:service": _consent("granted", T0)}
    combined = merges.merged_consents(survivor, merged)
    assert {key: (state["status"], state["source"]) for key, state in combined.items()} == {
        "email:marketing": ("withdrawn", "call"), "sms:marketing": ("withdrawn", "call"),
        "post:marketing": ("withdrawn", "web"), "push:service": ("granted", "web")}
    # The other way round, a grant at the same time does not beat the survivor's withdrawal.
    assert merges.merged_consents({"sms:marketing": _consent("withdrawn", T0)},
                                  {"sms:marketing": _consent("granted", T0)})["sms:marketing"]["status"] == "withdrawn"


@dataclass
class _Summary:
    purchase_count: int
    first_purchase_at: datetime | None
    last_purchase_at: datetime | None


@dataclass
class _Metric:
    currency: str
    total: Decimal
    count: int
    returned: Decimal = Decimal(0)
    margin: Decimal = Decimal(0)
    discount: Decimal = Decimal(0)


def test_purchase_metrics_add_up_exactly():
    totals = merges.combined_purchases(
        [_Summary(2, T0 + timedelta(days=3), T0 + timedelta(days=5)), _Summary(1, T0, T0)],
        [_Metric("EUR", Decimal("0.1000"), 1, Decimal("0.0500"), Decimal("0.0300"), Decimal("1.0001")),
         _Metric("EUR", Decimal("0.2000"), 1, Decimal("0.2000"), Decimal("-0.0100")),
         _Metric("USD", Decimal("9.9999"), 1)])
    assert (totals.count, totals.first_purchase_at, totals.last_purchase_at) == (3, T0, T0 + timedelta(days=5))
    assert [line.view() for line in totals.spend.values()] == [
        {"currency": "EUR", "amount": Decimal("0.3000"), "count": 2, "returned": Decimal("0.2500"),
         "net": Decimal("0.0500"), "margin": Decimal("0.0200"), "discount": Decimal("1.0001")},
        {"currency": "USD", "amount": Decimal("9.9999"), "count": 1, "returned": 0, "net": Decimal("9.9999"),
         "margin": 0, "discount": 0}]
    assert merges.combined_purchases([], []).view() == {"count": 0, "first_purchase_at": None,
                                                        "last_purchase_at": None, "total_spend": []}


# -- duplicates ----------------------------------------------------------------------------------------------

def test_scores_combine_the_evidence_as_independent_chances():
    assert duplicates.combined_score([]) == 0
    assert duplicates.combined_score([80]) == 80
    assert duplicates.combined_score([40, 35]) == 61
    assert duplicates.combined_score([95, 80, 75]) == 100


@pytest.mark.parametrize("raw, region, key", [
    ("+49 30 1234567", None, "+49301234567"),
    ("+49 (30) 123-4567", "US", "+49301234567"),
    ("030 1234567", "DE", "+49301234567"),
    ("(030) 123-4567", None, "national:0301234567"),
    ("(415) 555-0100", "US", "+14155550100"),
    ("  ", None, None),
    (None, "DE", None),
])
def test_phone_numbers_are_compared_in_e164(raw, region, key):
    assert duplicates.phone_key(raw, region) == key


def test_e_mail_variants_are_told_apart():
    assert duplicates.email_variant("ann.lee@gmail.com", "annlee+x@googlemail.com") == duplicates.SAME_GMAIL_ADDRESS
    assert duplicates.email_variant("ann@acme.example", "ann+x@acme.example") == duplicates.SAME_ADDRESS_WITHOUT_TAG


@pytest.mark.parametrize("cursor", ["x", "bm90LWEtY3Vyc29y", "MTAxOmE6Yg", "LTE6YTpi"])
def test_a_cursor_the_api_did_not_issue_is_a_422_naming_it(cursor):
    with pytest.raises(Unprocessable) as refused:
        duplicates.decode_cursor(cursor)
    assert refused.value.extra["errors"] == {"cursor": ["Invalid cursor."]}


def test_the_default_phone_region_is_a_known_region_code_checked_at_start_up():
    env = {"CRM_IDENTITY_PUBLIC_KEY": generate_keypair()[1]}
    assert from_env("contacts", env).default_phone_region is None
    assert from_env("contacts", {**env, "CRM_DEFAULT_PHONE_REGION": "de"}).default_phone_region == "DE"
    with pytest.raises(SettingsError, match="CRM_DEFAULT_PHONE_REGION"):
        from_env("contacts", {**env, "CRM_DEFAULT_PHONE_REGION": "Germany"})
