"""sort= on a contact's consent history and survey answers: every row once, in the order asked for."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.support.auth import identity_headers
from tests.support.sorting import walk

pytestmark = pytest.mark.integration

BASE = "/api/v1/contacts"
RW = identity_headers("contacts:read", "contacts:write")
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@pytest.fixture
def contact(client):
    response = client.post(BASE, json={"email": "sorted@example.com"}, headers=RW)
    assert response.status_code == 201, response.json
    return response.json["id"]


def test_survey_answers_sort_by_score_with_ties_in_recording_order(client, contact):
    scores = [7, 3, 9, 3, 10, 7, 0]
    for i, score in enumerate(scores):
        r = client.post(f"{BASE}/{contact}/feedback", headers=RW,
                        json={"kind": "nps", "score": score, "occurred_at": (T0 + timedelta(hours=i)).isoformat()})
        assert r.status_code == 201, r.json
    url = f"{BASE}/{contact}/feedback"
    ascending, _ = walk(client, url, RW, limit=2, sort="score")
    assert [a["score"] for a in ascending] == sorted(scores)
    descending, pages = walk(client, url, RW, limit=3, sort="-score")
    assert [a["score"] for a in descending] == sorted(scores, reverse=True) and pages == 3
    # Ties keep one direction: the answer recorded later comes later going up, earlier going down.
    sevens_up = [a["occurred_at"] for a in ascending if a["score"] == 7]
    assert sevens_up == sorted(sevens_up)
    assert client.get(url, headers=RW, query_string={"sort": "comment"}).status_code == 422


def test_consent_history_sorts_by_when_it_was_said_not_when_it_was_recorded(client, contact):
    # Recorded in this order, said in another: the history by occurred_at follows what the person said.
    offsets = [3, 1, 2, 0]
    for hours in offsets:
        r = client.post(f"{BASE}/{contact}/consents", headers=RW, json={"changes": [{
            "channel": "email", "purpose": "marketing", "status": "granted", "source": "web", "text_version": "v1",
            "occurred_at": (T0 + timedelta(hours=hours)).isoformat()}]})
        assert r.status_code == 201, r.json
    url = f"{BASE}/{contact}/consents"
    said, _ = walk(client, url, RW, limit=3, sort="occurred_at")
    assert [datetime.fromisoformat(c["occurred_at"]) for c in said] == [T0 + timedelta(hours=h) for h in range(4)]
    recorded, _ = walk(client, url, RW, limit=3)
    assert [datetime.fromisoformat(c["occurred_at"]) for c in recorded] == \
        [T0 + timedelta(hours=h) for h in reversed(offsets)]
