"""The pure rules of consent (which statement is current) and feedback (scores, NPS, CSAT, the window)."""
from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from services.common.problems import Unprocessable
from services.contacts.consent import apply_changes, change_problems, state_of, supersedes
from services.contacts.feedback import answer_problems, csat_average, nps_score, window

T0 = datetime(2026, 3, 1, 9, 30, tzinfo=timezone.utc)
T1 = T0 + timedelta(hours=1)


def _change(status: str, at: datetime, channel="email", purpose="marketing", **extra) -> dict:
    return {"channel": channel, "purpose": purpose, "status": status, "occurred_at": at, "source": "web-form",
            "text_version": "v1" if status == "granted" else None, **extra}


# -- consent ----------------------------------------------------------------------------------------------

def test_the_first_statement_for_a_channel_and_purpose_is_current():
    assert supersedes(_change("granted", T0), None)


def test_a_newer_statement_replaces_an_older_one_whatever_its_status():
    assert supersedes(_change("granted", T1), state_of(_change("withdrawn", T0)))
    assert supersedes(_change("withdrawn", T1), state_of(_change("granted", T0)))


def test_an_older_statement_never_replaces_a_newer_one():
    assert not supersedes(_change("granted", T0), state_of(_change("withdrawn", T1)))
    assert not supersedes(_change("withdrawn", T0), state_of(_change("granted", T1)))


def test_at_equal_times_a_withdrawal_wins_and_nothing_else_replaces():
    assert supersedes(_change("withdrawn", T0), state_of(_change("granted", T0)))
    assert not supersedes(_change("granted", T0), state_of(_change("withdrawn", T0)))
    assert not supersedes(_change("granted", T0, source="call-center"), state_of(_change("granted", T0)))


def test_times_in_other_offsets_compare_as_instants():
    same_instant = T0.astimezone(timezone(timedelta(hours=2)))
    assert not supersedes(_change("granted", same_instant), state_of(_change("withdrawn", T0)))


def test_a_withdrawal_wins_over_an_older_grant_that_arrives_later():
    state, current = apply_changes({}, [_change("withdrawn", T1), _change("granted", T0)])
    assert state == {"email:marketing": {"status": "withdrawn", "occurred_at": T1.isoformat(), "source": "web-form",
                                         "text_version": None}}
    assert current == [True, False]


def test_changes_of_different_keys_do_not_touch_each_other():
    state, current = apply_changes({}, [_change("granted", T0), _change("withdrawn", T0, channel="sms"),
                                        _change("granted", T0, purpose="service")])
    assert {key: value["status"] for key, value in state.items()} == {
        "email:marketing": "granted", "sms:marketing": "withdrawn", "email:service": "granted"}
    assert current == [True, True, True]


def test_applying_leaves_the_given_state_untouched():
    before = {"email:marketing": state_of(_change("granted", T0))}
    apply_changes(before, [_change("withdrawn", T1)])
    assert before["email:marketing"]["status"] == "granted"


def test_a_grant_needs_its_text_version_and_no_statement_lies_in_the_future():
    assert change_problems(_change("granted", T0), T0) == {}
    assert change_problems(_change("withdrawn", T0), T0) == {}
    assert set(change_problems(_change("granted", T0, text_version=None), T0)) == {"text_version"}
    assert change_problems(_change("granted", T0 + timedelta(minutes=4)), T0) == {}  # clock skew
    assert set(change_problems(_change("withdrawn", T0 + timedelta(minutes=6)), T0)) == {"occurred_at"}


# -- feedback ---------------------------------------------------------------------------------------------

def _answer(kind: str, score: int, **extra) -> dict:
    return {"kind": kind, "score": score, "occurred_at": T0, **extra}


@pytest.mark.parametrize("kind, score, ok", [("nps", 0, True), ("nps", 10, True), ("nps", 11, False),
                                             ("nps", -1, False), ("csat", 1, True), ("csat", 5, True),
                                             ("csat", 0, False), ("csat", 6, False)])
def test_scores_are_in_their_kinds_range(kind, score, ok):
    rated = {"purchase_id": uuid.uuid4()} if kind == "csat" else {}
    assert ("score" not in answer_problems(_answer(kind, score, **rated), T0)) is ok


def test_a_csat_answer_rates_exactly_one_interaction_or_purchase():
    one = uuid.uuid4()
    assert answer_problems(_answer("csat", 4, interaction_id=one), T0) == {}
    assert answer_problems(_answer("csat", 4, purchase_id=one), T0) == {}
    assert set(answer_problems(_answer("csat", 4), T0)) == {"interaction_id", "purchase_id"}
    assert set(answer_problems(_answer("csat", 4, interaction_id=one, purchase_id=one), T0)) == {
        "interaction_id", "purchase_id"}
    assert set(answer_problems(_answer("nps", 9, purchase_id=one), T0)) == {"purchase_id"}


def test_an_answer_may_not_lie_in_the_future():
    assert set(answer_problems(_answer("nps", 9, occurred_at=T0 + timedelta(hours=1)), T0)) == {"occurred_at"}


def test_nps_is_the_share_of_promoters_minus_the_share_of_detractors_in_points():
    assert nps_score(promoters=4, detractors=2, responses=7) == Decimal("28.6")  # 200/7 = 28.571...
    assert nps_score(promoters=10, detractors=0, responses=10) == Decimal("100.0")
    assert nps_score(promoters=0, detractors=3, responses=3) == Decimal("-100.0")
    assert nps_score(promoters=1, detractors=1, responses=5) == Decimal("0.0")


def test_nps_rounds_half_away_from_zero_and_is_none_without_answers():
    assert nps_score(promoters=1, detractors=0, responses=16) == Decimal("6.3")  # 6.25
    assert nps_score(promoters=0, detractors=1, responses=16) == Decimal("-6.3")  # -6.25
    assert nps_score(promoters=0, detractors=0, responses=0) is None


def test_csat_is_the_mean_to_two_places():
    assert csat_average(total=15, responses=4) == Decimal("3.75")
    assert csat_average(total=13, responses=3) == Decimal("4.33")
    assert csat_average(total=11, responses=8) == Decimal("1.38")  # 1.375
    assert csat_average(total=0, responses=0) is None


def test_a_date_window_covers_whole_utc_days_and_a_time_is_an_instant():
    start, until = window(date(2026, 3, 1), date(2026, 3, 31))
    assert (start, until) == (datetime(2026, 3, 1, tzinfo=timezone.utc), datetime(2026, 4, 1, tzinfo=timezone.utc))
    assert window(T0, T0) == (T0, T0 + timedelta(microseconds=1))
    assert window(None, None) == (None, None)


def test_a_window_that_ends_before_it_starts_is_refused_naming_from():
    with pytest.raises(Unprocessable) as refused:
        window(date(2026, 3, 2), date(2026, 3, 1))
    assert set(refused.value.extra["errors"]) == {"from"}
    with pytest.raises(Unprocessable):
        window(T1, T0)
