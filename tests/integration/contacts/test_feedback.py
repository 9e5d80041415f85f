"""Survey answers and their figures on the real PostgreSQL: NPS, CSAT, what a CSAT rates, the analytics window."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from services.contacts import purchase_facts
from services.contacts.models import Contact, Feedback, Interaction, TimelineEntry
from tests.support.auth import identity_headers

pytestmark = pytest.mark.integration

BASE = "/api/v1/contacts"
FIGURES = "/api/v1/analytics/feedback"
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)


def _contact(client, headers, email="ann@example.com") -> str:
    response = client.post(BASE, json={"email": email}, headers=headers)
    assert response.status_code == 201, response.json
    return response.json["id"]


def _answer(client, headers, contact_id, status=201, **answer):
    body = {"occurred_at": T0.isoformat(), **answer}
    response = client.post(f"{BASE}/{contact_id}/feedback", json=body, headers=headers)
    assert response.status_code == status, response.get_data(as_text=True)
    return response.json


def _problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    return response.json


def _interaction(runtime, contact_id) -> str:
    interaction = Interaction(id=uuid.uuid4(), contact_id=uuid.UUID(contact_id), type="call", occurred_at=T0,
                              summary="Asked about delivery", recorded_by="test-key")
    with runtime.session_factory() as s, s.begin():
        s.add(interaction)
    return str(interaction.id)


def _purchase(runtime, contact_id) -> str:
    purchase_id = uuid.uuid4()
    purchase_facts.record_purchase(runtime.uow(), {"purchase_id": purchase_id, "contact_id": uuid.UUID(contact_id),
                                                    "currency": "EUR", "amount": Decimal(20), "occurred_at": T0})
    return str(purchase_id)


def _stored(runtime) -> list[Feedback]:
    with runtime.session_factory() as s:
        return list(s.scalars(select(Feedback).order_by(Feedback.seq)))


def _set(runtime, contact_id, **values) -> None:
    with runtime.session_factory() as s, s.begin():
        s.execute(update(Contact).where(Contact.id == uuid.UUID(contact_id)).values(**values))


# -- recording --------------------------------------------------------------------------------------------

def test_an_nps_answer_is_stored_announced_and_on_the_timeline(client, rw_headers, store, runtime):
    contact_id = _contact(client, rw_headers)
    body = _answer(client, rw_headers, contact_id, kind="nps", score=9, comment="Quick delivery", survey="q1-2026",
                   channel="email")
    assert (body["kind"], body["score"], body["comment"], body["survey"], body["recorded_by"]) == (
        "nps", 9, "Quick delivery", "q1-2026", "test-key")
    [stored] = _stored(runtime)
    assert (str(stored.id), stored.occurred_at) == (body["id"], T0)
    [event] = store.events("crm.feedback.received")
    assert event["data"] == {"feedback_id": body["id"], "contact_id": contact_id, "kind": "nps", "score": 9,
                             "occurred_at": "2026-03-10T12:00:00+00:00", "interaction_id": None, "purchase_id": None}
    with runtime.session_factory() as s:
        [entry] = s.scalars(select(TimelineEntry).where(TimelineEntry.contact_id == uuid.UUID(contact_id)))
    assert (str(entry.id), entry.kind, entry.occurred_at, entry.summary) == (body["id"], "feedback", T0,
                                                                              "NPS 9 (q1-2026)")
    assert "Quick delivery" not in str(entry.data)  # free text stays with the answer


def test_a_csat_answer_rates_an_interaction_or_a_purchase_of_the_contact(client, rw_headers, store, runtime):
    contact_id = _contact(client, rw_headers)
    interaction_id, purchase_id = _interaction(runtime, contact_id), _purchase(runtime, contact_id)
    on_call = _answer(client, rw_headers, contact_id, kind="csat", score=4, interaction_id=interaction_id)
    on_sale = _answer(client, rw_headers, contact_id, kind="csat", score=2, purchase_id=purchase_id)
    assert (on_call["interaction_id"], on_call["purchase_id"]) == (interaction_id, None)
    assert (on_sale["interaction_id"], on_sale["purchase_id"]) == (None, purchase_id)
    assert [e["data"]["purchase_id"] for e in store.events("crm.feedback.received")] == [None, purchase_id]


def test_a_csat_answer_for_someone_elses_or_an_unknown_record_is_a_422_naming_the_field(client, rw_headers, runtime,
                                                                                         store):
    ann, bob = _contact(client, rw_headers), _contact(client, rw_headers, "bob@example.com")
    bobs_call, bobs_sale = _interaction(runtime, bob), _purchase(runtime, bob)
    cases = [({"interaction_id": bobs_call}, "interaction_id"), ({"purchase_id": bobs_sale}, "purchase_id"),
             ({"interaction_id": str(uuid.uuid4())}, "interaction_id"),
             ({"purchase_id": str(uuid.uuid4())}, "purchase_id")]
    for rated, field in cases:
        response = client.post(f"{BASE}/{ann}/feedback", json={"kind": "csat", "score": 5, **rated},
                               headers=rw_headers)
        assert set(_problem(response, 422)["errors"]) == {field}
    assert _stored(runtime) == [] and store.events("crm.feedback.received") == []


@pytest.mark.parametrize("answer, fields", [
    ({"kind": "nps", "score": 11}, {"score"}),
    ({"kind": "nps", "score": -1}, {"score"}),
    ({"kind": "nps", "score": "9"}, {"score"}),
    ({"kind": "nps", "score": 9.5}, {"score"}),
    ({"kind": "csat", "score": 0, "purchase_id": str(uuid.uuid4())}, {"score"}),
    ({"kind": "csat", "score": 3}, {"interaction_id", "purchase_id"}),
    ({"kind": "csat", "score": 3, "interaction_id": str(uuid.uuid4()), "purchase_id": str(uuid.uuid4())},
     {"interaction_id", "purchase_id"}),
    ({"kind": "nps", "score": 8, "purchase_id": str(uuid.uuid4())}, {"purchase_id"}),
    ({"kind": "ces", "score": 3}, {"kind"}),
    ({"score": 3}, {"kind"}),
    ({"kind": "nps"}, {"score"}),
    ({"kind": "nps", "score": 7, "comment": "x" * 2001}, {"comment"}),
    ({"kind": "nps", "score": 7, "survey": "s" * 101}, {"survey"}),
    ({"kind": "nps", "score": 7, "occurred_at": "2026-03-10T12:00:00"}, {"occurred_at"}),
    ({"kind": "nps", "score": 7, "occurred_at": "2999-01-01T00:00:00Z"}, {"occurred_at"}),
    ({"kind": "nps", "score": 7, "mood": "happy"}, {"mood"}),
])
def test_invalid_answers_are_a_422_naming_the_fields(client, rw_headers, runtime, answer, fields):
    contact_id = _contact(client, rw_headers)
    response = client.post(f"{BASE}/{contact_id}/feedback", json=answer, headers=rw_headers)
    assert fields <= set(_problem(response, 422)["errors"])
    assert _stored(runtime) == []


def test_an_unknown_contact_is_a_404_for_answering_and_listing(client, rw_headers):
    unknown = uuid.uuid4()
    _problem(client.post(f"{BASE}/{unknown}/feedback", json={"kind": "nps", "score": 5}, headers=rw_headers), 404)
    _problem(client.get(f"{BASE}/{unknown}/feedback", headers=rw_headers), 404)


def test_a_replayed_idempotency_key_records_one_answer(client, rw_headers, runtime):
    contact_id = _contact(client, rw_headers)
    headers = {**rw_headers, "Idempotency-Key": "survey-42"}
    first = client.post(f"{BASE}/{contact_id}/feedback", json={"kind": "nps", "score": 10}, headers=headers)
    again = client.post(f"{BASE}/{contact_id}/feedback", json={"kind": "nps", "score": 10}, headers=headers)
    assert first.status_code == again.status_code == 201 and again.json == first.json
    assert len(_stored(runtime)) == 1


def test_the_answers_page_most_recently_recorded_first_and_filter_by_kind(client, rw_headers, runtime):
    contact_id = _contact(client, rw_headers)
    purchase_id = _purchase(runtime, contact_id)
    for score in (3, 8, 10):
        _answer(client, rw_headers, contact_id, kind="nps", score=score)
    _answer(client, rw_headers, contact_id, kind="csat", score=5, purchase_id=purchase_id)
    url = f"{BASE}/{contact_id}/feedback"
    first = client.get(url, query_string={"limit": 2}, headers=rw_headers).json
    rest = client.get(url, query_string={"limit": 2, "cursor": first["next_cursor"]}, headers=rw_headers).json
    assert [(a["kind"], a["score"]) for a in first["items"] + rest["items"]] == [
        ("csat", 5), ("nps", 10), ("nps", 8), ("nps", 3)]
    assert rest["next_cursor"] is None
    nps = client.get(url, query_string={"kind": "nps"}, headers=rw_headers).json["items"]
    assert [a["score"] for a in nps] == [10, 8, 3]
    assert "kind" in _problem(client.get(url, query_string={"kind": "ces"}, headers=rw_headers), 422)["errors"]


# -- figures ----------------------------------------------------------------------------------------------

def _figures(client, **query) -> dict:
    response = client.get(FIGURES, query_string=query, headers=identity_headers("contacts:read"))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json


def _survey(client, headers, runtime, contact_id, nps=(), csat=(), at=T0):
    for score in nps:
        _answer(client, headers, contact_id, kind="nps", score=score, occurred_at=at.isoformat())
    for score in csat:
        _answer(client, headers, contact_id, kind="csat", score=score, purchase_id=_purchase(runtime, contact_id),
                occurred_at=at.isoformat())


def test_nps_and_csat_match_the_figures_worked_out_by_hand(client, rw_headers, runtime):
    ann, bob = _contact(client, rw_headers), _contact(client, rw_headers, "bob@example.com")
    # NPS: promoters 10, 9, 9, 9 (4); passive 8 (1); detractors 6, 2 (2); 7 answers: (4 - 2) / 7 = 28.571... -> 28.6
    _survey(client, rw_headers, runtime, ann, nps=(10, 9, 6), csat=(5, 4))
    _survey(client, rw_headers, runtime, bob, nps=(9, 9, 8, 2), csat=(4, 2))
    # CSAT: 5 + 4 + 4 + 2 = 15 over 4 answers = 3.75
    figures = _figures(client, **{"from": "2026-03-01", "to": "2026-03-31"})
    assert figures["nps"] == {"score": "28.6", "responses": 7, "promoters": 4, "passives": 1, "detractors": 2}
    assert figures["csat"] == {"average": "3.75", "responses": 4,
                               "distribution": {"1": 0, "2": 1, "3": 0, "4": 2, "5": 1}}
    assert (figures["from"], figures["to"], figures["segment"], figures["account_id"]) == (
        "2026-03-01", "2026-03-31", None, None)


def test_the_window_counts_whole_days_and_inclusive_instants(client, rw_headers, runtime):
    ann = _contact(client, rw_headers)
    _survey(client, rw_headers, runtime, ann, nps=(10,), at=datetime(2026, 3, 31, 23, 59, 59, tzinfo=timezone.utc))
    _survey(client, rw_headers, runtime, ann, nps=(0,), at=datetime(2026, 4, 1, tzinfo=timezone.utc))
    _survey(client, rw_headers, runtime, ann, nps=(5,), at=datetime(2026, 2, 28, 23, 59, tzinfo=timezone.utc))
    assert _figures(client, **{"from": "2026-03-01", "to": "2026-03-31"})["nps"]["score"] == "100.0"
    assert _figures(client, **{"from": "2026-03-01", "to": "2026-04-01"})["nps"]["responses"] == 2
    instant = _figures(client, **{"from": "2026-04-01T00:00:00Z", "to": "2026-04-01T02:00:00+02:00"})
    assert instant["nps"] == {"score": "-100.0", "responses": 1, "promoters": 0, "passives": 0, "detractors": 1}
    assert instant["from"] == "2026-04-01T00:00:00+00:00" and instant["to"] == "2026-04-01T02:00:00+02:00"
    assert _figures(client)["nps"]["responses"] == 3  # no window: every answer
    assert _figures(client, to="2026-03-01")["nps"]["responses"] == 1


def test_an_empty_window_has_zero_counts_and_no_scores(client, rw_headers, runtime):
    _survey(client, rw_headers, runtime, _contact(client, rw_headers), nps=(9,), csat=(5,))
    figures = _figures(client, **{"from": "2025-01-01", "to": "2025-12-31"})
    assert figures["nps"] == {"score": None, "responses": 0, "promoters": 0, "passives": 0, "detractors": 0}
    assert figures["csat"] == {"average": None, "responses": 0,
                               "distribution": {"1": 0, "2": 0, "3": 0, "4": 0, "5": 0}}


def test_a_segment_is_the_contacts_with_that_tag_and_an_account_narrows_too(client, rw_headers, runtime):
    ann, bob, cem = (_contact(client, rw_headers, f"{name}@example.com") for name in ("ann", "bob", "cem"))
    account = uuid.uuid4()
    _set(runtime, ann, tags=["gold", "vip"], account_id=account)
    _set(runtime, bob, tags=["vip"])
    _set(runtime, cem, tags=["vipx"], account_id=account)
    _survey(client, rw_headers, runtime, ann, nps=(10,), csat=(5,))
    _survey(client, rw_headers, runtime, bob, nps=(4,), csat=(3,))
    _survey(client, rw_headers, runtime, cem, nps=(0, 0), csat=(1,))
    vip = _figures(client, segment="VIP")
    assert (vip["segment"], vip["nps"]["score"], vip["nps"]["responses"]) == ("vip", "0.0", 2)
    assert (vip["csat"]["average"], vip["csat"]["responses"]) == ("4.00", 2)
    in_account = _figures(client, account_id=str(account))
    assert in_account["nps"]["responses"] == 3 and in_account["nps"]["score"] == "-33.3"  # (1 - 2) / 3
    both = _figures(client, segment="vip", account_id=str(account))
    assert both["nps"]["responses"] == 1 and both["account_id"] == str(account)
    assert _figures(client, segment="nobody")["nps"]["responses"] == 0


@pytest.mark.parametrize("query, field", [
    ({"from": "2026-03-02", "to": "2026-03-01"}, "from"),
    ({"from": "2026-03-01T12:00:00Z", "to": "2026-03-01T11:59:59Z"}, "from"),
    ({"from": "2026-03-01T12:00:00"}, "from"),  # a time needs its offset
    ({"to": "yesterday"}, "to"),
    ({"to": "2026-02-30"}, "to"),
    ({"account_id": "x"}, "account_id"),
    ({"segment": "s" * 51}, "segment"),
    ({"segment": "not a tag!"}, "segment"),
])
def test_bad_figure_arguments_are_a_422_naming_them(client, query, field):
    response = client.get(FIGURES, query_string=query, headers=identity_headers("contacts:read"))
    assert field in _problem(response, 422)["errors"]


# -- scopes -----------------------------------------------------------------------------------------------

def test_answering_needs_write_and_reading_and_figures_need_read(client, rw_headers, runtime):
    contact_id = _contact(client, rw_headers)
    url = f"{BASE}/{contact_id}/feedback"
    read_only, write_only = identity_headers("contacts:read"), identity_headers("contacts:write")
    _problem(client.post(url, json={"kind": "nps", "score": 9}, headers=read_only), 403)
    _problem(client.get(url, headers=write_only), 403)
    _problem(client.get(FIGURES, headers=write_only), 403)
    _problem(client.get(FIGURES, headers=identity_headers("leads:read")), 403)
    assert _stored(runtime) == []
    receipt = client.post(url, json={"kind": "nps", "score": 9}, headers=write_only)
    assert receipt.status_code == 201 and set(receipt.json) == {"id"}
    for headers in (identity_headers("contacts:*"), identity_headers("admin")):
        assert client.get(url, headers=headers).status_code == 200
        assert client.get(FIGURES, headers=headers).status_code == 200
