"""Faults on real parts: broker restart, killed worker, poison event, no identity, bad input."""
from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid

import psycopg
import pytest
import requests

from tests.support.suite import wait_until

pytestmark = pytest.mark.reliability

N = 500


def _sql(url: str, query: str, *args):
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        return conn.execute(query, args).fetchall()


def _sql_exec(url: str, statement: str) -> None:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(statement)


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


def _dead_letters(suite) -> list[dict]:
    out = suite.crm("dlq", "list", "contacts", "--json").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_an_event_whose_handler_always_fails_is_dead_lettered_while_others_flow_and_can_be_replayed(suite, internal_client):
    tag = uuid.uuid4().hex[:8]
    poison_email = f"poison-{tag}@corp.example"
    contacts_db = suite.database_urls["contacts"]
    # Fault injection in the real contacts database: every insert of this one person fails.
    _sql_exec(contacts_db, f"""
        CREATE FUNCTION refuse_{tag}() RETURNS trigger AS $$
        BEGIN
          IF NEW.email_normalized = '{poison_email}' THEN RAISE EXCEPTION 'refused by the test trigger'; END IF;
          RETURN NEW;
        END $$ LANGUAGE plpgsql;
        CREATE TRIGGER refuse_{tag} BEFORE INSERT ON contacts FOR EACH ROW EXECUTE FUNCTION refuse_{tag}();
    """)
    try:
        poison = internal_client.post("/api/v1/leads", json={"email": poison_email}).json()
        assert internal_client.post(f"/api/v1/leads/{poison['id']}/convert").status_code == 202
        for lead_id in _capture(internal_client, tag, 20):
            internal_client.post(f"/api/v1/leads/{lead_id}/convert")
        wait_until(lambda: _converted_leads(suite, tag) == 20, timeout=60, message="later events keep flowing")
        letters = wait_until(lambda: [d for d in _dead_letters(suite) if poison_email in d["body"]],
                             timeout=60, message="the failing event in crm.contacts.dlq")
        assert len(letters) == 1
        assert letters[0]["type"] == "crm.lead.converted"
        assert "refused by the test trigger" in letters[0]["error"]
        assert letters[0]["attempts"] == 2, "dead-lettered after both retries"
        assert internal_client.get(f"/api/v1/leads/{poison['id']}").json()["status"] == "converting"
    finally:
        _sql_exec(contacts_db, f"DROP TRIGGER IF EXISTS refuse_{tag} ON contacts")

    replayed = suite.crm("dlq", "replay", "contacts")
    assert "replayed 1 " in replayed.stderr
    wait_until(lambda: internal_client.get(f"/api/v1/leads/{poison['id']}").json()["status"] == "converted",
               timeout=60, message="the replayed event converts the lead")
    assert not [d for d in _dead_letters(suite) if poison_email in d["body"]]


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
