"""Faults on real parts: broker restart, killed worker, poison event, no identity, bad input."""
from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid

import pika
import psycopg
import pytest
import requests

from services.common.broker import connection_parameters
from services.common.catalog import EXCHANGE, make_event
from tests.support.suite import wait_until

pytestmark = pytest.mark.reliability

N = 500


def _sql(url: str, query: str, *args):
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        return conn.execute(query, args).fetchall()


def _capture(client, tag: str, n: int) -> list[str]:
    ids = []
    for i in range(n):
        r = client.post("/api/v1/leads", json={"email": f"r{i}-{tag}@corp.example", "source": "referral"})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return ids


def _contacts_for(suite, tag: str) -> tuple[int, int]:
    rows = _sql(suite.database_urls["contacts"],
                "SELECT count(*), count(DISTINCT email_normalized) FROM contacts WHERE email_normalized LIKE %s",
                f"%-{tag}@corp.example")
    return rows[0]


def _converted_leads(suite, tag: str) -> int:
    return _sql(suite.database_urls["leads"],
                "SELECT count(*) FROM leads WHERE status = 'converted' AND contact_id IS NOT NULL "
                "AND email_normalized LIKE %s", f"%-{tag}@corp.example")[0][0]


def _rabbitmq(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)


def test_500_leads_converted_across_a_broker_restart_become_exactly_500_contacts(suite, internal_client):
    tag = uuid.uuid4().hex[:8]
    ids = _capture(internal_client, tag, N)
    stopped = False
    try:
        for i, lead_id in enumerate(ids):
            if i == N * 3 // 10:
                _rabbitmq("stop_app")
                stopped = True
            if i == N * 7 // 10:
                _rabbitmq("start_app")
                stopped = False
            r = internal_client.post(f"/api/v1/leads/{lead_id}/convert")
            assert r.status_code == 202, r.text
    finally:
        if stopped:
            _rabbitmq("start_app")
    wait_until(lambda: _converted_leads(suite, tag) == N, timeout=180, message=f"{N} leads linked to contacts")
    time.sleep(1.0)  # let any redelivered duplicate land before counting
    assert _contacts_for(suite, tag) == (N, N)


def test_a_worker_killed_mid_stream_loses_nothing_and_duplicates_nothing(suite, internal_client):
    tag = uuid.uuid4().hex[:8]
    ids = _capture(internal_client, tag, N)
    for i, lead_id in enumerate(ids):
        if i == N // 4:
            suite.kill("worker:contacts", signal.SIGKILL)
        if i == N // 2:
            suite.kill("worker:leads", signal.SIGKILL)
            suite.start("worker:contacts")
        if i == N * 3 // 4:
            suite.start("worker:leads")
        assert internal_client.post(f"/api/v1/leads/{lead_id}/convert").status_code == 202
    wait_until(lambda: _converted_leads(suite, tag) == N, timeout=180, message=f"{N} leads linked to contacts")
    time.sleep(1.0)
    assert _contacts_for(suite, tag) == (N, N)


def _publish(amqp_url: str, event) -> None:
    conn = pika.BlockingConnection(connection_parameters(amqp_url))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish(EXCHANGE, event.type, event.to_json(),
                         pika.BasicProperties(delivery_mode=2, message_id=str(event.id), type=event.type))
    finally:
        conn.close()


def _dead_letters(suite) -> list[dict]:
    out = suite.crm("dlq", "list", "contacts", "--json").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_an_event_whose_handler_always_fails_is_dead_lettered_while_others_flow_and_can_be_replayed(suite, internal_client):
    # A job title longer than the contacts column can hold: valid by the catalog, refused by the
    # database on every attempt.
    poison = make_event("crm.lead.converted", {"lead_id": uuid.uuid4(), "email": "poison@corp.example",
                                               "job_title": "Chief " * 100}, source="/tests")
    _publish(suite.env["AMQP_URL"], poison)
    tag = uuid.uuid4().hex[:8]
    for lead_id in _capture(internal_client, tag, 20):
        internal_client.post(f"/api/v1/leads/{lead_id}/convert")
    wait_until(lambda: _converted_leads(suite, tag) == 20, timeout=60, message="later events keep flowing")
    letters = wait_until(lambda: [d for d in _dead_letters(suite) if d["message_id"] == str(poison.id)],
                         timeout=60, message="poison event in crm.contacts.dlq")
    first_dead_at = letters[0]["dead_lettered_at"]

    replayed = suite.crm("dlq", "replay", "contacts")
    assert "replayed 1 " in replayed.stderr
    # Back in the flow: it is retried again and, still failing, dead-lettered anew.
    again = wait_until(lambda: [d for d in _dead_letters(suite)
                                if d["message_id"] == str(poison.id) and d["dead_lettered_at"] != first_dead_at],
                       timeout=60, message="replayed event retried and dead-lettered again")
    assert len(again) == 1


def test_a_request_straight_to_a_service_without_a_gateway_token_is_refused(suite):
    for svc in ("leads", "contacts"):
        base = f"http://127.0.0.1:{suite.ports[svc]}/api/v1/{svc}"
        bare = requests.get(base, timeout=10)
        assert bare.status_code == 401
        assert bare.headers["Content-Type"].startswith("application/problem+json")
        forged = requests.get(base, headers={"X-CRM-Identity": "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
                                             "X-Scopes": "admin"}, timeout=10)
        assert forged.status_code == 401


def test_a_lead_with_wrong_types_or_missing_fields_is_a_422_naming_them_and_nothing_is_stored(suite, internal_client):
    def counts():
        return _sql(suite.database_urls["leads"], "SELECT (SELECT count(*) FROM leads), (SELECT count(*) FROM outbox),"
                    " (SELECT count(*) FROM lead_touches)")[0]

    before = counts()
    r = internal_client.post("/api/v1/leads", json={"first_name": 42, "phone": ["x"], "source": "Not A Source!"})
    assert r.status_code == 422
    assert r.headers["Content-Type"].startswith("application/problem+json")
    problem = r.json()
    assert {"email", "first_name", "phone", "source"} <= set(problem["errors"])
    assert "Traceback" not in r.text
    unknown = internal_client.post("/api/v1/leads", json={"email": "a@corp.example", "favourite_colour": "red"})
    assert unknown.status_code == 422
    assert "favourite_colour" in unknown.json()["errors"]
    assert counts() == before
