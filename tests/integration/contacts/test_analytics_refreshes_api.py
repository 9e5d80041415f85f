"""/api/v1/analytics/refreshes on the real PostgreSQL: ask for a refresh, list refreshes, follow one to its end."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.contacts.analytics.jobs import AnalyticsJob
from services.contacts.analytics.refresh import STEPS
from tests.support.auth import identity_headers

pytestmark = pytest.mark.integration

BASE = "/api/v1/analytics/refreshes"
ANALYST = identity_headers("contacts:analytics")
READER = identity_headers("contacts:read")
WRITER = identity_headers("contacts:read", "contacts:write")
AS_OF = "2026-05-01T00:00:00+00:00"


def _ask(client, body=None, headers=ANALYST) -> dict:
    response = client.post(BASE, json=body or {}, headers=headers)
    assert response.status_code == 202, response.get_data(as_text=True)
    assert response.headers["Location"] == f"{BASE}/{response.json['id']}"
    return response.json


def _problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    return response.json


@pytest.mark.parametrize("headers", [READER, WRITER, identity_headers("contacts:import"), identity_headers("contacts:*")],
                         ids=["read", "write", "import", "wildcard"])
def test_only_the_analytics_scope_may_ask_for_a_refresh(client, headers):
    _problem(client.post(BASE, json={}, headers=headers), 403)

    assert client.get(BASE, headers=READER).json["items"] == []


def test_an_analytics_key_asks_for_a_refresh_of_the_base_currency_as_of_now(client, contacts_settings):
    before = datetime.now(UTC)

    body = _ask(client)

    assert (body["status"], body["trigger"], body["currency"]) == ("pending", "api", contacts_settings.base_currency)
    assert datetime.fromisoformat(body["as_of"]) >= before
    assert (body["steps_done"], body["steps_total"], body["progress"], body["step"]) == (0, len(STEPS), 0.0, None)
    assert body["parameters"]["window_days"] == 365
    assert body["requested_by"] and body["error"] is None


def test_currency_as_of_and_parameters_are_taken(client):
    body = _ask(client, {"currency": "usd", "as_of": AS_OF, "parameters": {"window_days": 90}})

    assert body["currency"] == "USD"
    assert datetime.fromisoformat(body["as_of"]) == datetime(2026, 5, 1, tzinfo=UTC)
    assert body["parameters"]["window_days"] == 90


@pytest.mark.parametrize("body, field", [
    ({"currency": "EURO"}, "currency"),
    ({"currency": 7}, "currency"),
    ({"currency": "XYZ"}, "currency"),  # three letters, but no currency
    ({"as_of": "yesterday"}, "as_of"),
    ({"as_of": "2026-05-01T00:00:00"}, "as_of"),  # no offset
    ({"as_of": (datetime.now(UTC) + timedelta(days=2)).isoformat()}, "as_of"),
    ({"parameters": "window_days=90"}, "parameters"),
    ({"parameters": {"window_days": 0}}, "parameters.window_days"),
    ({"parameters": {"no_such_parameter": 1}}, "parameters.no_such_parameter"),
    ({"refresh": True}, "refresh"),
])
def test_an_invalid_request_is_a_422_naming_the_field(client, body, field):
    problem = _problem(client.post(BASE, json=body, headers=ANALYST), 422)

    assert field in problem["errors"], problem
    assert client.get(BASE, headers=READER).json["items"] == []


def test_a_refresh_is_followed_to_its_end_on_its_own_url(client, runtime):
    asked = _ask(client, {"as_of": AS_OF})
    url = f"{BASE}/{asked['id']}"
    assert client.get(url, headers=READER).json["status"] == "pending"

    assert AnalyticsJob(runtime).run_once()

    done = client.get(url, headers=READER).json
    assert (done["status"], done["step"], done["steps_done"], done["progress"]) == ("completed", "finish",
                                                                                    len(STEPS), 100.0)
    assert set(done["timings"]) == set(STEPS)
    assert done["started_at"] and done["finished_at"]


def test_an_unknown_refresh_is_a_404_problem(client):
    _problem(client.get(f"{BASE}/{uuid.uuid4()}", headers=READER), 404)


def test_reading_refreshes_needs_the_read_scope(client):
    asked = _ask(client)

    _problem(client.get(BASE, headers=ANALYST), 403)
    _problem(client.get(f"{BASE}/{asked['id']}", headers=identity_headers("contacts:write")), 403)


def test_the_list_pages_newest_first_and_filters_by_status_and_currency(client, runtime):
    first = _ask(client, {"currency": "EUR", "as_of": AS_OF})
    AnalyticsJob(runtime).run_once()
    second = _ask(client, {"currency": "USD"})
    third = _ask(client, {"currency": "EUR"})

    page = client.get(f"{BASE}?limit=2", headers=READER).json
    rest = client.get(f"{BASE}?limit=2&cursor={page['next_cursor']}", headers=READER).json
    assert [r["id"] for r in page["items"] + rest["items"]] == [third["id"], second["id"], first["id"]]
    assert rest["next_cursor"] is None

    def ids(query: str) -> list[str]:
        response = client.get(f"{BASE}?{query}", headers=READER)
        assert response.status_code == 200, response.get_data(as_text=True)
        return [r["id"] for r in response.json["items"]]

    assert ids("status=completed") == [first["id"]]
    assert ids("status=pending&currency=eur") == [third["id"]]
    assert ids("currency=USD") == [second["id"]]
    assert ids("sort=as_of") == [first["id"], second["id"], third["id"]]
    _problem(client.get(f"{BASE}?status=done", headers=READER), 422)
    _problem(client.get(f"{BASE}?sort=currency", headers=READER), 422)


def test_a_retry_with_the_same_idempotency_key_asks_once(client):
    headers = {**ANALYST, "Idempotency-Key": f"refresh-{uuid.uuid4()}"}
    body = {"currency": "EUR", "as_of": AS_OF}

    first = client.post(BASE, json=body, headers=headers)
    again = client.post(BASE, json=body, headers=headers)
    other = client.post(BASE, json={"currency": "USD"}, headers=headers)

    assert first.status_code == again.status_code == 202
    assert again.json["id"] == first.json["id"] and again.headers.get("Idempotent-Replayed") == "true"
    assert "Idempotency-Key" in _problem(other, 422)["errors"]
    assert [r["id"] for r in client.get(BASE, headers=READER).json["items"]] == [first.json["id"]]
