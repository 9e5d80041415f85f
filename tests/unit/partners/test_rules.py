"""Partner rules without I/O: status transitions, terms that hold together, what changed, If-Match."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from services.common.etags import ANY_VERSION, NO_PRECONDITION, Precondition, PreconditionRequired, etag
from services.common.problems import Conflict, PreconditionFailed
from services.partners import rules
from services.partners.models import PARTNER_STATUSES

ALLOWED = [
    ("prospect", "onboarding"), ("prospect", "terminated"),
    ("onboarding", "active"), ("onboarding", "prospect"), ("onboarding", "terminated"),
    ("active", "suspended"), ("active", "terminated"),
    ("suspended", "active"), ("suspended", "terminated"),
]


@pytest.mark.parametrize("current, target", ALLOWED)
def test_a_partner_may_make_the_lifecycle_moves(current, target):
    assert rules.can_move(current, target)
    rules.check_transition(current, target)


@pytest.mark.parametrize("current, target", [
    (c, t) for c in PARTNER_STATUSES for t in PARTNER_STATUSES if c != t and (c, t) not in ALLOWED])
def test_every_other_move_is_a_conflict_naming_the_current_status(current, target):
    assert not rules.can_move(current, target)
    with pytest.raises(Conflict) as caught:
        rules.check_transition(current, target)
    assert caught.value.status == 409
    assert caught.value.extra == {"current_status": current}


@pytest.mark.parametrize("status", PARTNER_STATUSES)
def test_staying_in_a_status_is_not_a_move(status):
    rules.check_transition(status, status)


@pytest.mark.parametrize("target", [s for s in PARTNER_STATUSES if s != "terminated"])
def test_terminated_is_final(target):
    with pytest.raises(Conflict, match="final"):
        rules.check_transition("terminated", target)


def test_every_status_but_terminated_can_be_left_and_terminated_is_reachable_from_all():
    assert rules.STATUS_TRANSITIONS["terminated"] == frozenset()
    assert all("terminated" in rules.STATUS_TRANSITIONS[s] for s in PARTNER_STATUSES if s != "terminated")
    assert set(rules.STATUS_TRANSITIONS) == set(PARTNER_STATUSES)


def test_a_period_must_end_after_it_starts():
    start = date(2026, 1, 1)
    assert rules.terms_errors({"effective_from": start, "effective_to": date(2026, 1, 2)}) == {}
    assert rules.terms_errors({"effective_from": start, "effective_to": start}) == {"effective_to": ["Must be after effective_from."]}
    assert set(rules.terms_errors({"effective_from": start, "effective_to": date(2025, 12, 31)})) == {"effective_to"}


def test_an_open_ended_contract_is_valid_but_cannot_auto_renew():
    assert rules.terms_errors({"effective_from": date(2026, 1, 1), "effective_to": None, "auto_renew": False}) == {}
    errors = rules.terms_errors({"effective_from": date(2026, 1, 1), "effective_to": None, "auto_renew": True})
    assert list(errors) == ["effective_to"] and "auto-renewing" in errors["effective_to"][0]


def test_only_the_terms_given_are_checked_so_a_partial_change_waits_for_the_merge():
    assert rules.terms_errors({"auto_renew": True}) == {}
    assert rules.terms_errors({"effective_to": date(2020, 1, 1)}) == {}


def test_changed_terms_compare_decimals_by_value_and_keep_the_canonical_order():
    old = {"payment_terms_days": 30, "discount_percent": Decimal("2.50"), "currency": "EUR", "auto_renew": True}
    assert rules.changed_terms(old, {"discount_percent": Decimal("2.5"), "currency": "EUR"}) == []
    assert rules.changed_terms(old, {"auto_renew": False, "currency": "USD", "payment_terms_days": 45}) == \
        ["payment_terms_days", "currency", "auto_renew"]


def test_if_match_becomes_a_precondition_on_the_terms_version():
    assert Precondition.from_header(None) == NO_PRECONDITION
    assert Precondition.from_header("   ") == NO_PRECONDITION
    assert Precondition.from_header("*") == ANY_VERSION
    assert Precondition.from_header('W/"3"').versions == {3}
    assert Precondition.from_header('"3", W/"4" ,W/"x"').versions == {3, 4}
    assert Precondition.from_header("3").versions == frozenset()


def test_a_precondition_holds_only_for_the_version_in_force():
    assert Precondition.from_header(etag(2)).holds(2)
    assert not Precondition.from_header(etag(2)).holds(3)
    assert not Precondition.from_header("garbage").holds(1)
    assert ANY_VERSION.holds(17)


def test_terms_need_if_match_missing_is_428_and_stale_is_412():
    with pytest.raises(PreconditionRequired) as missing:
        NO_PRECONDITION.check(2, required=True, what="the contract")
    assert missing.value.status == 428 and 'W/"2"' in missing.value.detail
    with pytest.raises(PreconditionFailed) as stale:
        Precondition.of(1).check(2, required=True, what="the contract")
    assert stale.value.status == 412 and stale.value.extra == {"current_version": 2}
    ANY_VERSION.check(2, required=True, what="the contract")
