"""PostgreSQL restarts while conversions and purchases flow: 503 problem+json meanwhile, recovery without help,
nothing lost or doubled.

The suite runs on a PostgreSQL server of this module's own (tests/support/private_pg.py); the shared server
other tests use is never stopped.
"""
from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter

import pytest
import requests
from sqlalchemy import event, text

from services.common.db import is_database_unavailable, make_engine
from tests.support import infra
from tests.support.auth import identity_headers
from tests.support.fixtures import Client, running_suite
from tests.support.flow import assert_exact, lead_email, make_purchases, wait_settled
from tests.support.load import GatewayLoad
from tests.support.private_pg import private_postgres_or_reason
from tests.support.suite import Suite, wait_until

pytestmark = pytest.mark.reliability

LEADS = 300
SHOPPERS = 10
PURCHASES = 150
CLIENTS = 8
RESTART_AT = 0.3  # the share of the calls sent when PostgreSQL stops
MIN_DOWNTIME = 3.0  # seconds PostgreSQL stays down at least


@pytest.fixture(scope="module")
def private_pg():
    """A PostgreSQL server of this module's own, started; stopped and removed afterwards."""
    pg, reason = private_postgres_or_reason()
    if pg is None:
        pytest.skip(f"cannot run a private PostgreSQL: {reason}")
    try:
        pg.start()
        yield pg
    finally:
        pg.destroy()


@pytest.fixture(scope="module")
def pg_suite(private_pg, tmp_path_factory):
    """The whole suite (the gateway's key store included) on the private server."""
    with running_suite(tmp_path_factory.mktemp("pg-restart"), create_database=private_pg.create_database,
                       drop_database=None) as suite:
        yield suite


def _assert_unavailable_problem(response: requests.Response) -> None:
    """A 503 problem+json that says when to retry and shows no internals."""
    assert response.status_code == 503, f"{response.url} -> {response.status_code}: {response.text}"
    assert response.headers["Content-Type"].startswith("application/problem+json"), response.headers
    assert int(response.headers["Retry-After"]) >= 1
    body = response.json()
    assert body["status"] == 503 and body["type"].endswith("/service-unavailable")
    assert "Traceback" not in response.text and "psycopg" not in response.text and "sqlalchemy" not in response.text


class Outcomes:
    """What the load saw: statuses per call kind, and any answer that was neither success nor a proper 503."""

    def __init__(self):
        self.lock = threading.Lock()
        self.statuses: Counter = Counter()
        self.unexpected: list[str] = []

    def record(self, kind: str, response: requests.Response, ok: set[int]) -> bool:
        """True when the call is done; False when it answered 503 and must be sent again."""
        with self.lock:
            self.statuses[(kind, response.status_code)] += 1
        if response.status_code in ok:
            return True
        if response.status_code == 503:
            try:
                _assert_unavailable_problem(response)
            except (AssertionError, KeyError, ValueError) as exc:
                self.unexpected.append(f"{kind}: malformed 503 ({exc}): {response.text[:300]}")
                return True
            return False
        with self.lock:
            self.unexpected.append(f"{kind}: {response.status_code} {response.text[:300]}")
        return True

    def count(self, status: int) -> int:
        return sum(n for (_kind, code), n in self.statuses.items() if code == status)

    def server_errors(self) -> int:
        """Answers with a 5xx status: the load met the outage."""
        return sum(n for (_kind, code), n in self.statuses.items() if code >= 500)


def send_until_done(outcomes: Outcomes, kind: str, call, ok: set[int], *, deadline: float = 120) -> requests.Response:
    """Send a call, again after Retry-After while it answers 503 (a purchase sent again is recognised by its
    external_id and answers 200)."""
    stop = time.monotonic() + deadline
    while True:
        response = call()
        if outcomes.record(kind, response, ok) or time.monotonic() > stop:
            return response
        time.sleep(int(response.headers["Retry-After"]))


class Restarter(threading.Thread):
    """Stops PostgreSQL once RESTART_AT of the calls are sent, probes every web process while it is down, and
    starts it again."""

    def __init__(self, pg, suite: Suite, load: GatewayLoad, outcomes: Outcomes, total: int, lead_id: str):
        super().__init__(name="restarter", daemon=True)
        self.pg, self.suite, self.load, self.outcomes, self.total = pg, suite, load, outcomes, total
        self.lead_id = lead_id
        self.stopped_at_call = self.restarted_at_call = None
        self.probes: dict[str, requests.Response] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            wait_until(lambda: self.load.done >= self.total * RESTART_AT, timeout=300, interval=0.02,
                       message=f"{RESTART_AT:.0%} of the calls sent")
            self.stopped_at_call = self.load.done
            down_since = time.monotonic()
            self.pg.stop("fast")
            try:
                self._probe()
                # Down long enough for the load to meet the outage (each client waits Retry-After after a 503).
                wait_until(lambda: self.outcomes.server_errors() > 0 and time.monotonic() - down_since >= MIN_DOWNTIME,
                           timeout=60, interval=0.1, message="the load met the outage")
            finally:
                self.pg.start()
            self.restarted_at_call = self.load.done
        except BaseException as exc:  # noqa: BLE001 — reported by the test
            self.error = exc

    def _probe(self) -> None:
        """Every web process, directly (with a signed identity) and through the gateway, while the server is down."""
        headers = identity_headers("leads:read", "contacts:read", "loyalty:read", "partners:read")
        paths = {"leads": f"/api/v1/leads/{self.lead_id}", "contacts": "/api/v1/contacts",
                 "loyalty": "/api/v1/loyalty/programs", "partners": "/api/v1/partners"}
        for svc, path in paths.items():
            # Twice: the first call may meet a pooled connection the stop just ended, the second a refused connect.
            for attempt in (1, 2):
                self.probes[f"{svc}#{attempt}"] = requests.get(
                    f"http://127.0.0.1:{self.suite.ports[svc]}{path}", headers=headers, timeout=30)
        self.probes["gateway"] = self.load.client().get(paths["leads"])


def test_a_postgresql_restart_mid_flow_answers_503_then_recovers_and_loses_or_doubles_nothing(private_pg, pg_suite):
    suite = pg_suite
    key = suite.create_key(scopes="leads:*,contacts:*,loyalty:*,partners:*", name="pg-restart")
    client = Client(suite.gateway_url, key)
    load = GatewayLoad(suite.gateway_url, key, CLIENTS)
    tag = uuid.uuid4().hex[:8]

    def created(response, status=201):
        assert response.status_code == status, response.text
        return response.json()["id"]

    shoppers = load.run(range(SHOPPERS), lambda c, i: created(c.post("/api/v1/contacts", json={
        "email": f"shopper-{i}-{tag}@shop.example"})))
    leads = load.run(range(LEADS), lambda c, i: created(c.post("/api/v1/leads", json={
        "email": lead_email(i, tag), "source": "referral"})))

    purchases = make_purchases(shoppers, PURCHASES, tag, seed=5)
    calls = [("convert", lead_id) for lead_id in leads] + [("purchase", p) for p in purchases]
    random.Random(5).shuffle(calls)
    outcomes = Outcomes()

    def send(c: Client, call):
        kind, arg = call
        if kind == "convert":
            return send_until_done(outcomes, kind, lambda: c.post(f"/api/v1/leads/{arg}/convert"), {202})
        # 200 only when a purchase sent again had been recorded by an attempt that answered 503.
        return send_until_done(outcomes, kind, lambda: c.post("/api/v1/loyalty/purchases", json=arg), {200, 201})

    load.done = 0
    restarter = Restarter(private_pg, suite, load, outcomes, len(calls), leads[0])
    restarter.start()
    try:
        load.run(calls, send)
        restarter.join(120)
    finally:
        if not private_pg.running:
            private_pg.start()
    assert restarter.error is None, f"{restarter.error!r}\n{private_pg.log_tail()}"
    assert 0 < restarter.stopped_at_call < len(calls), "PostgreSQL stopped while calls were being sent"

    # While it was down, every web process answered 503 problem+json with Retry-After, never a 500.
    for name, response in restarter.probes.items():
        _assert_unavailable_problem(response)
    assert outcomes.unexpected == [], outcomes.unexpected
    assert outcomes.count(503) > 0 and outcomes.count(500) == 0, outcomes.statuses
    # Every call succeeded in the end: each purchase answered 201 once, or 200 after an attempt that had
    # committed answered 503.
    assert outcomes.statuses[("convert", 202)] == LEADS
    assert outcomes.statuses[("purchase", 201)] + outcomes.statuses[("purchase", 200)] == PURCHASES

    # The workers reconnected on their own: everything committed was published and handled once.
    wait_settled(suite, tag=tag, leads=LEADS, purchases=PURCHASES, timeout=120)
    assert_exact(suite, client, tag=tag, leads=leads, shoppers=shoppers, purchases=purchases)


def test_after_a_restart_one_statement_fails_and_the_pool_replaces_every_stale_connection(private_pg):
    """Without pre-ping, SQLAlchemy's disconnect handling invalidates the whole pool on the first failure."""
    engine = make_engine(private_pg.create_database("pool"))
    statements = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, statement, *_a: statements.append(statement))
    try:
        held = [engine.connect() for _ in range(3)]  # three connections in the pool
        for conn in held:
            conn.execute(text("SELECT 1"))
        for conn in held:
            conn.close()
        private_pg.stop("fast")
        private_pg.start()

        with pytest.raises(Exception) as failure, engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        assert is_database_unavailable(failure.value)
        assert failure.value.connection_invalidated  # SQLAlchemy recognised the disconnect
        for _ in range(3):  # the other two stale connections are replaced at checkout, not found dead by a query
            with engine.connect() as conn:
                assert conn.execute(text("SELECT 1")).scalar() == 1
        assert statements == ["SELECT 1"] * 7, "a checkout ran no statement of its own (no pre-ping)"
    finally:
        engine.dispose()


def test_a_refused_connection_or_a_shutdown_is_unavailable_and_an_error_in_the_work_is_not():
    """The classification the web processes (503) and the consumers (batch back to the queue) rely on."""
    import sqlite3

    import psycopg
    from sqlalchemy.exc import IntegrityError, OperationalError

    with pytest.raises(psycopg.OperationalError) as refused:  # nothing listens on a fresh free port
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{infra.free_port()}/postgres", connect_timeout=5)
    assert is_database_unavailable(refused.value)
    assert is_database_unavailable(OperationalError("SELECT 1", {}, psycopg.errors.AdminShutdown("restart")))
    assert is_database_unavailable(OperationalError("SELECT 1", {}, psycopg.errors.CannotConnectNow("starting")))
    # Errors of the work itself: retried or dead-lettered as before, a 500 (or the view's own answer) in a request.
    assert not is_database_unavailable(OperationalError("UPDATE", {}, psycopg.errors.DeadlockDetected("40P01")))
    assert not is_database_unavailable(OperationalError("SELECT", {}, psycopg.errors.QueryCanceled("timeout")))
    assert not is_database_unavailable(IntegrityError("INSERT", {}, psycopg.errors.UniqueViolation("dup")))
    assert not is_database_unavailable(OperationalError("SELECT", {}, sqlite3.OperationalError("no such table")))
    assert not is_database_unavailable(ValueError("bad input"))
