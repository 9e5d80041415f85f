"""Renewals and expiry on the real PostgreSQL: the notices a run publishes once, auto-renewal as a terms version,
two runs racing, the contract list's `expiring_within`, the period fields and the portal's notice deadlines."""
from __future__ import annotations

import dataclasses
import threading
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from crm.cli import cli
from services.partners.models import ContractNotice
from services.partners.renewals import run_once
from tests.support.auth import identity_headers
from tests.support.suite import wait_until

from .conftest import READ, RW

pytestmark = pytest.mark.integration

PORTAL = "/api/v1/partner-portal"
# TERMS (conftest): 2026-01-01 to 2026-12-31, auto_renew, 60 days' notice: the notice deadline is 2026-11-01.
DEADLINE, END = date(2026, 11, 1), date(2026, 12, 31)


@pytest.fixture
def runtime(app):
    return app.extensions["crm.runtime"]


def _types(store) -> list[str]:
    return [e["type"] for e in store.events() if e["type"].startswith("crm.contract.")
            and e["type"] not in ("crm.contract.created",)]


def _today() -> date:
    return datetime.now(UTC).date()


def _ending_in(api, partner_id: str, days: int, *, notice: int = 30, title: str = "Supply agreement") -> dict:
    """A contract whose terms end `days` from today (negative: ended), a year long."""
    end = _today() + timedelta(days=days)
    return api.contract(partner_id, title=title, effective_from=(end - timedelta(days=365)).isoformat(),
                        effective_to=end.isoformat(), notice_period_days=notice, auto_renew=False)


# -- the run ------------------------------------------------------------------------------------------------

def test_a_contract_is_announced_once_when_its_notice_period_begins(api, runtime, store):
    contract = api.contract(api.partner()["id"])

    assert run_once(runtime, DEADLINE - timedelta(days=1)).expiring == 0
    first = run_once(runtime, DEADLINE)
    again = run_once(runtime, DEADLINE + timedelta(days=5))

    assert (first.expiring, again.expiring) == (1, 0)
    (event,) = store.events("crm.contract.expiring")
    assert event["subject"] == contract["id"]
    assert event["data"]["contract_id"] == contract["id"] and event["data"]["partner_id"] == contract["partner_id"]
    assert (event["data"]["version"], event["data"]["effective_to"], event["data"]["notice_deadline"]) == \
        (1, "2026-12-31", "2026-11-01")
    assert store.count(ContractNotice) == 1


def test_a_contract_that_does_not_renew_expires_at_its_end(api, client, runtime, store):
    contract = api.contract(api.partner()["id"], auto_renew=False)

    run_once(runtime, DEADLINE)
    before_end = run_once(runtime, END - timedelta(days=1))
    at_end = run_once(runtime, END)
    after = run_once(runtime, END + timedelta(days=30))

    assert (before_end.expired, at_end.expired, at_end.renewed, after.expired) == (0, 1, 0, 0)
    assert _types(store) == ["crm.contract.expiring", "crm.contract.expired"]
    assert store.events("crm.contract.expired")[0]["data"]["version"] == 1
    assert client.get(f"/api/v1/contracts/{contract['id']}", headers=READ).json["terms_version"] == 1


def test_an_auto_renewing_contract_renews_as_the_next_terms_version(api, client, runtime, store):
    contract = api.contract(api.partner()["id"])

    result = run_once(runtime, END)

    assert (result.renewed, result.expired, result.expiring) == (1, 0, 0)
    r = client.get(f"/api/v1/contracts/{contract['id']}", headers=READ)
    assert r.headers["ETag"] == 'W/"2"'
    terms = r.json["terms"]
    # The next period starts at the old end and is as long (364 days); every other term carries over.
    assert (terms["effective_from"], terms["effective_to"]) == ("2026-12-31", "2027-12-30")
    assert {k: v for k, v in terms.items() if k not in ("effective_from", "effective_to", "version", "created_at",
                                                         "changed_by")} == \
        {k: v for k, v in contract["terms"].items() if k not in ("effective_from", "effective_to", "version",
                                                                 "created_at", "changed_by")}
    assert terms["changed_by"] == "renewals"
    # Made like any terms change, then announced.
    assert _types(store) == ["crm.contract.terms_changed", "crm.contract.renewed"]
    changed = store.events("crm.contract.terms_changed")[0]["data"]
    assert (changed["version"], changed["previous_version"], changed["changed"]) == \
        (2, 1, ["effective_from", "effective_to"])
    renewed = store.events("crm.contract.renewed")[0]["data"]
    assert (renewed["version"], renewed["renewed_version"], renewed["renewed_until"], renewed["effective_to"]) == \
        (1, 2, "2027-12-30", "2026-12-31")
    assert run_once(runtime, END).renewed == 0


def test_a_run_after_a_long_stop_renews_period_after_period_up_to_today(api, client, runtime, store):
    contract = api.contract(api.partner()["id"], effective_from="2026-01-01", effective_to="2026-02-01",
                            notice_period_days=10)

    result = run_once(runtime, date(2026, 4, 15))

    # Periods of 31 days: to 03-04, 04-04, 05-05; the last one is in force and its notice began on 04-25 (later).
    assert result.renewed == 3
    terms = client.get(f"/api/v1/contracts/{contract['id']}", headers=READ).json["terms"]
    assert (terms["version"], terms["effective_from"], terms["effective_to"]) == (4, "2026-04-04", "2026-05-05")
    assert [e["data"]["renewed_version"] for e in store.events("crm.contract.renewed")] == [2, 3, 4]
    # The periods that ended on the way were over when the run saw them: no expiring notice for them.
    assert store.events("crm.contract.expiring") == []


def test_a_terminated_partners_contract_expires_instead_of_renewing(api, client, runtime, store):
    partner = api.partner(status="active")
    contract = api.contract(partner["id"])
    terminated = client.patch(f"/api/v1/partners/{partner['id']}", json={"status": "terminated"}, headers=RW)
    assert terminated.status_code == 200

    assert run_once(runtime, DEADLINE).expiring == 0  # nothing to give notice of
    result = run_once(runtime, END)

    assert (result.renewed, result.expired, result.failed) == (0, 1, 0)
    assert client.get(f"/api/v1/contracts/{contract['id']}", headers=READ).json["terms_version"] == 1


def test_a_run_works_through_every_batch(api, runtime, store):
    partner = api.partner()["id"]
    for i in range(5):
        api.contract(partner, title=f"c{i}", auto_renew=i % 2 == 0)

    assert run_once(runtime, DEADLINE, batch_size=2).expiring == 5
    result = run_once(runtime, END, batch_size=2)

    assert (result.renewed, result.expired) == (3, 2)
    assert store.count(ContractNotice) == 10


def test_open_ended_contracts_and_later_ends_give_no_notice(api, runtime, store):
    partner = api.partner()["id"]
    api.contract(partner, effective_to=None, auto_renew=False)
    api.contract(partner, effective_to="2027-06-30")

    result = run_once(runtime, END)

    assert (result.expiring, result.expired, result.renewed) == (0, 0, 0)
    assert store.count(ContractNotice) == 0


def _lock_waiters(runtime) -> int:
    with runtime.engine.connect() as conn:
        return conn.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                "AND wait_event_type = 'Lock'"))


def _race(runtime, today: date, kind: str):
    """Run A holds its claimed batch of `kind` uncommitted; run B starts and must wait for it; then A commits."""
    claimed, go, results, errors = threading.Event(), threading.Event(), {}, []

    def hold(batch_kind: str) -> None:
        if batch_kind == kind and not claimed.is_set():
            claimed.set()
            assert go.wait(60), "the test never let run A commit"

    def run(name: str, **kw) -> None:
        try:
            results[name] = run_once(runtime, today, **kw)
        except Exception as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    a = threading.Thread(target=run, args=("a",), kwargs={"pause": hold})
    a.start()
    assert claimed.wait(60)
    b = threading.Thread(target=run, args=("b",))
    b.start()
    try:
        wait_until(lambda: _lock_waiters(runtime) >= 1, timeout=30, message="run B waiting for run A's claim")
    finally:
        go.set()
        a.join(60)
        b.join(60)
    assert errors == []
    return results["a"], results["b"]


def test_two_runs_racing_publish_each_expiring_notice_once(api, runtime, store):
    partner = api.partner()["id"]
    for i in range(3):
        api.contract(partner, title=f"c{i}")

    a, b = _race(runtime, DEADLINE, "expiring")

    assert (a.expiring, b.expiring) == (3, 0)
    assert len(store.events("crm.contract.expiring")) == 3


def test_two_runs_racing_renew_a_contract_once(api, client, runtime, store):
    contract = api.contract(api.partner()["id"])

    a, b = _race(runtime, END, "end")

    assert (a.renewed, b.renewed, a.failed, b.failed) == (1, 0, 0, 0)
    assert len(store.events("crm.contract.renewed")) == 1
    assert len(store.events("crm.contract.terms_changed")) == 1
    assert client.get(f"/api/v1/contracts/{contract['id']}", headers=READ).json["terms_version"] == 2


def test_the_command_runs_the_renewals_for_a_given_day(api, app, store):
    api.contract(api.partner()["id"])
    url = app.extensions["crm.settings"].database_url
    env = {"PARTNERS_DATABASE_URL": url, "DATABASE_URL": None}

    ran = CliRunner().invoke(cli, ["partners", "renewals", "--today", "2026-11-01"], env=env)
    again = CliRunner().invoke(cli, ["partners", "renewals", "--today", "2026-11-01"], env=env)
    wrong = CliRunner().invoke(cli, ["partners", "renewals", "--today", "1st of May"], env=env)

    assert ran.exit_code == 0, ran.output
    assert "1 expiring, 0 expired, 0 renewed" in ran.output
    assert "0 expiring, 0 expired, 0 renewed" in again.output
    assert wrong.exit_code == 2 and "--today" in wrong.output
    assert len(store.events("crm.contract.expiring")) == 1


# -- GET /api/v1/contracts ----------------------------------------------------------------------------------

def test_expiring_within_lists_the_contracts_ending_in_the_window_soonest_first(api, client):
    p, q = api.partner("P")["id"], api.partner("Q")["id"]
    in_50 = _ending_in(api, p, 50, notice=60)
    in_10 = _ending_in(api, q, 10, notice=5)
    _ending_in(api, p, 100)
    _ending_in(api, p, 0)  # ended today
    _ending_in(api, p, -3)

    r = client.get("/api/v1/contracts?expiring_within=60d", headers=READ)

    assert r.status_code == 200, r.text
    assert [c["id"] for c in r.json["items"]] == [in_10["id"], in_50["id"]]
    first, second = r.json["items"]
    assert (first["state"], first["notice_deadline"]) == ("active", (_today() + timedelta(days=5)).isoformat())
    assert (second["state"], second["notice_deadline"]) == ("in_notice", (_today() - timedelta(days=10)).isoformat())
    only_p = client.get(f"/api/v1/contracts?expiring_within=60d&partner_id={p}", headers=READ).json["items"]
    assert [c["id"] for c in only_p] == [in_50["id"]]
    by_deadline = client.get("/api/v1/contracts?expiring_within=60d&sort=notice_deadline", headers=READ).json
    assert [c["id"] for c in by_deadline["items"]] == [in_50["id"], in_10["id"]]


def test_the_contract_list_pages_and_without_a_window_lists_every_contract(api, client):
    p = api.partner()["id"]
    made = [_ending_in(api, p, days) for days in (5, 15, 25, 400)]

    pages, cursor = [], None
    while True:
        url = "/api/v1/contracts?expiring_within=30d&limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(url, headers=READ).json
        pages.append([c["id"] for c in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    every = client.get("/api/v1/contracts", headers=READ).json["items"]

    assert pages == [[made[0]["id"], made[1]["id"]], [made[2]["id"]]]
    assert [c["id"] for c in every] == [c["id"] for c in reversed(made)]


@pytest.mark.parametrize("window", ["60", "2m", "12w", "0d", "3651d", "-5d", "1.5d", ""])
def test_a_window_that_is_not_whole_days_is_a_422(client, window):
    r = client.get(f"/api/v1/contracts?expiring_within={window}", headers=READ)

    assert r.status_code == 422
    assert "expiring_within" in r.text


def test_the_contract_list_needs_partners_read(client):
    assert client.get("/api/v1/contracts", headers=identity_headers("partners:write")).status_code == 403
    partner_key = identity_headers(kind="partner", partner_id=str(uuid.uuid4()))
    assert client.get("/api/v1/contracts", headers=partner_key).status_code == 403


def test_the_contract_detail_shows_the_notice_deadline_and_state(api, client):
    p = api.partner()
    contract = _ending_in(api, p["id"], 20, notice=30)
    open_ended = api.contract(p["id"], effective_to=None, auto_renew=False)
    portal = identity_headers(kind="partner", partner_id=p["id"], key_id="key-p")

    internal = client.get(f"/api/v1/contracts/{contract['id']}", headers=READ).json
    own = client.get(f"{PORTAL}/contracts/{contract['id']}", headers=portal).json
    unending = client.get(f"/api/v1/contracts/{open_ended['id']}", headers=READ).json

    deadline = (_today() - timedelta(days=10)).isoformat()
    assert (contract["notice_deadline"], contract["state"]) == (deadline, "in_notice")
    assert (internal["notice_deadline"], internal["state"]) == (deadline, "in_notice")
    assert (own["notice_deadline"], own["state"]) == (deadline, "in_notice")
    assert (unending["notice_deadline"], unending["state"]) == (None, "active")
    ended = _ending_in(api, p["id"], -1)
    assert client.get(f"/api/v1/contracts/{ended['id']}", headers=READ).json["state"] == "expired"


# -- the portal's notice deadlines -----------------------------------------------------------------------------

@pytest.fixture
def two_partners(api):
    """Partners A and B, each with contracts whose deadlines are 20 days ahead, 200 days ahead and passed."""
    made = {}
    for name in ("A", "B"):
        partner = api.partner(f"Partner {name}", status="active")
        soon = _ending_in(api, partner["id"], 50, notice=30, title=f"{name} soon")
        later = _ending_in(api, partner["id"], 230, notice=30, title=f"{name} later")
        in_notice = _ending_in(api, partner["id"], 10, notice=30, title=f"{name} in notice")
        _ending_in(api, partner["id"], -5, title=f"{name} ended")
        headers = identity_headers(kind="partner", partner_id=partner["id"], key_id=f"key-{name}")
        made[name] = (partner, {"soon": soon, "later": later, "in_notice": in_notice}, headers)
    return made


def test_a_partner_sees_only_its_own_notice_deadlines_soonest_first(client, two_partners):
    for name, (partner, contracts, headers) in two_partners.items():
        r = client.get(f"{PORTAL}/notices", headers=headers)

        assert r.status_code == 200, r.text
        items = r.json["items"]
        assert [i["contract_id"] for i in items] == [contracts["in_notice"]["id"], contracts["soon"]["id"]]
        assert [i["state"] for i in items] == ["in_notice", "active"]
        assert items[1] == {"contract_id": contracts["soon"]["id"], "title": f"{name} soon", "terms_version": 1,
                            "effective_to": (_today() + timedelta(days=50)).isoformat(), "notice_period_days": 30,
                            "auto_renew": False, "notice_deadline": (_today() + timedelta(days=20)).isoformat(),
                            "state": "active"}
        wide = client.get(f"{PORTAL}/notices?within=365d&limit=2", headers=headers).json
        rest = client.get(f"{PORTAL}/notices?within=365d&limit=2&cursor={wide['next_cursor']}", headers=headers).json
        assert [i["contract_id"] for i in wide["items"] + rest["items"]] == \
            [contracts[k]["id"] for k in ("in_notice", "soon", "later")]
        assert rest["next_cursor"] is None


def test_another_partners_contract_is_not_in_the_notices_and_its_detail_is_404(client, two_partners):
    _a, _a_contracts, a_headers = two_partners["A"]
    _b, b_contracts, _b_headers = two_partners["B"]

    listed = client.get(f"{PORTAL}/notices?within=3650d", headers=a_headers).json["items"]
    seen_by_a = {i["contract_id"] for i in listed}

    assert seen_by_a.isdisjoint({c["id"] for c in b_contracts.values()})
    assert client.get(f"{PORTAL}/contracts/{b_contracts['soon']['id']}", headers=a_headers).status_code == 404


def test_the_notices_refuse_internal_keys_and_suspended_partners(client, two_partners):
    a, _contracts, a_headers = two_partners["A"]

    assert client.get(f"{PORTAL}/notices", headers=RW).status_code == 403
    assert client.patch(f"/api/v1/partners/{a['id']}", json={"status": "suspended"}, headers=RW).status_code == 200
    refused = client.get(f"{PORTAL}/notices", headers=a_headers)

    assert refused.status_code == 403 and refused.json["partner_status"] == "suspended"
    assert client.get(f"{PORTAL}/notices?within=30", headers=two_partners["B"][2]).status_code == 422


# -- the worker's job -----------------------------------------------------------------------------------------

def test_the_worker_runs_the_renewals_at_each_slot(api, app, runtime, store):
    from crm.registry import SUITE
    from services.partners.renewals import RenewalJob, next_slot

    worker = SUITE.create_worker("partners", app.extensions["crm.settings"])
    worker.runtime.engine.dispose()
    assert "renewals" in worker.jobs
    _ending_in(api, api.partner()["id"], 10, notice=30)
    fast = dataclasses.replace(runtime, settings=runtime.settings.replace(partners_renewal_interval=0.2))
    stop = threading.Event()
    job = threading.Thread(target=RenewalJob(fast).run, args=(stop,))
    job.start()
    try:
        wait_until(lambda: store.events("crm.contract.expiring"), timeout=30, message="the job's first run")
    finally:
        stop.set()
        job.join(30)
    assert not job.is_alive()
    assert len(store.events("crm.contract.expiring")) == 1
    assert next_slot(86400 * 3 + 5, 86400) == 86400 * 4 and next_slot(86400 * 4, 86400) == 86400 * 5
