"""A worker's ops port on the real PostgreSQL and RabbitMQ: health, readiness and metrics that move with the events."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from datetime import timedelta

import pika
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from crm.registry import SUITE
from services.common.broker import connection_parameters, declare_topology
from services.common.catalog import make_event
from services.common.db import utcnow
from services.common.worker import Worker
from tests.support import infra
from tests.support.infra import free_port
from tests.support.suite import stop_process, wait_until

from .messaging import Counter, Outbox, publish_raw, runtime_on

pytestmark = pytest.mark.integration

BINDINGS = {"contacts": ("crm.lead.converted",)}
POISON = "poison@example.com"


def count_lead(uow, event):
    """Counts each converted lead per e-mail; the poison address always fails."""
    if event.data["email"] == POISON:
        raise RuntimeError("downstream refused")
    row = uow.session.get(Counter, event.data["email"])
    if row is None:
        uow.session.add(Counter(name=event.data["email"], value=1))
    else:
        row.value += 1


@pytest.fixture
def make_worker(make_database, make_settings):
    """Factory: a contacts-shaped worker on a fresh database (the test schema of messaging.py), stopped after."""
    workers = []

    def make(**env) -> Worker:
        runtime = runtime_on(make_settings("contacts", make_database("ops"), **env))
        worker = Worker(runtime, {"crm.lead.converted": count_lead}, BINDINGS)
        worker.queue_depths.cache_seconds = 0  # every scrape reads the broker (the cache has a unit test)
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.stop()
        worker.runtime.engine.dispose()


def _get(port: int, path: str) -> requests.Response:
    return requests.get(f"http://127.0.0.1:{port}{path}", timeout=10)


def scrape(port: int) -> dict[tuple, float]:
    """(metric sample name, sorted labels without `service`) -> value, from the worker's /metrics."""
    response = _get(port, "/metrics")
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "service"))
            samples[(sample.name, labels)] = sample.value
    return samples


def _identity_env() -> dict[str, str]:
    """The identity key a service process of this test run starts with (services only verify tokens)."""
    return {"CRM_IDENTITY_PUBLIC_KEY": infra.IDENTITY_PUBLIC_KEY}


def _event(email: str):
    return make_event("crm.lead.converted", {"lead_id": uuid.uuid4(), "email": email}, source="/tests")


def test_the_ops_port_serves_health_readiness_and_metrics(make_worker, amqp_url):
    worker = make_worker(AMQP_URL=amqp_url)
    port = worker.serve_ops(host="127.0.0.1", port=0)

    # Nothing runs yet: not ready, and the problem names both loops.
    not_ready = _get(port, "/readyz")
    assert not_ready.status_code == 503
    assert not_ready.headers["Content-Type"] == "application/problem+json"
    assert not_ready.json()["checks"] == {"database": "ok", "relay": "unavailable: not connected to the broker",
                                          "consumer": "unavailable: not connected to the broker"}

    worker.start()
    wait_until(lambda: _get(port, "/readyz").status_code == 200, timeout=30, message="worker ready")
    assert _get(port, "/readyz").json() == {"status": "ready", "service": "contacts",
                                            "checks": {"database": "ok", "relay": "ok", "consumer": "ok"}}
    health = _get(port, "/healthz")
    assert health.status_code == 200
    assert health.json()["threads"] == {"relay": "alive", "consumer": "alive", "retention": "alive"}
    metrics = _get(port, "/metrics")
    assert metrics.headers["Content-Type"].startswith("text/plain")
    for name in ("crm_worker_events_handled_total", "crm_worker_events_failed_total", "crm_worker_batch_size",
                 "crm_worker_outbox_backlog", "crm_worker_outbox_oldest_unpublished_age_seconds",
                 "crm_worker_queue_ready_messages", "crm_worker_dlq_messages"):
        assert name in metrics.text, name


def test_metrics_move_when_events_are_published_handled_failed_and_dead_lettered(make_worker, amqp_url):
    worker = make_worker(AMQP_URL=amqp_url)
    runtime = worker.runtime
    # Before anything runs: three outbox rows, the oldest written two minutes ago, and four deliveries waiting.
    with runtime.uow() as uow:
        for _ in range(3):
            uow.add_event("crm.lead.created", {"lead_id": uuid.uuid4(), "email": "a@example.com", "score": 1})
        uow.commit()
    with runtime.session_factory() as session, session.begin():
        session.execute(update(Outbox).values(created_at=utcnow() - timedelta(minutes=2)))
    conn = pika.BlockingConnection(connection_parameters(amqp_url))
    try:
        declare_topology(conn.channel(), BINDINGS, runtime.settings.retry_delays)
    finally:
        conn.close()
    good, other, poison = _event("good@example.com"), _event("other@example.com"), _event(POISON)
    for event in (good, good, other, poison):  # `good` twice: the inbox absorbs the second
        publish_raw(amqp_url, event.type, event.to_json(), message_id=str(event.id))

    port = worker.serve_ops(host="127.0.0.1", port=0)
    before = scrape(port)
    assert before[("crm_worker_outbox_backlog", ())] == 3
    assert before[("crm_worker_outbox_oldest_unpublished_age_seconds", ())] >= 120
    assert before[("crm_worker_queue_ready_messages", (("queue", "crm.contacts"),))] == 4
    assert before[("crm_worker_dlq_messages", (("queue", "crm.contacts.dlq"),))] == 0

    worker.start()
    lead = (("event_type", "crm.lead.converted"),)
    after = wait_until(
        lambda: (s := scrape(port)).get(("crm_worker_events_dead_lettered_total", lead)) == 1
        and s.get(("crm_worker_outbox_backlog", ())) == 0 and s,
        timeout=60, message="the poison event dead-lettered and the outbox published")
    assert after[("crm_worker_events_handled_total", lead)] == 2
    assert after[("crm_worker_events_duplicate_total", lead)] == 1
    assert after[("crm_worker_events_failed_total", lead)] == 3  # the first attempt and two retries
    # At least: a row whose confirm came after its lease (3 s here) on a loaded machine is published again.
    assert after[("crm_worker_outbox_published_total", ())] >= 3
    assert after[("crm_worker_outbox_oldest_unpublished_age_seconds", ())] == 0
    assert after[("crm_worker_batch_size_count", (("loop", "relay"),))] >= 1
    assert after[("crm_worker_batch_size_sum", (("loop", "relay"),))] >= 3
    assert after[("crm_worker_batch_size_sum", (("loop", "consumer"),))] == 6  # 4 deliveries, 2 retries
    assert after[("crm_worker_queue_ready_messages", (("queue", "crm.contacts"),))] == 0
    assert after[("crm_worker_dlq_messages", (("queue", "crm.contacts.dlq"),))] == 1


def test_readyz_turns_503_naming_the_loops_while_the_broker_is_unreachable(make_worker):
    closed = free_port()  # nothing listens there
    worker = make_worker(AMQP_URL=f"amqp://guest:guest@127.0.0.1:{closed}/%2F")
    worker.start()
    port = worker.serve_ops(host="127.0.0.1", port=0)
    ready = _get(port, "/readyz")
    assert ready.status_code == 503
    assert ready.headers["Content-Type"] == "application/problem+json"
    problem = ready.json()
    assert problem["status"] == 503 and "relay" in problem["detail"] and "consumer" in problem["detail"]
    assert problem["checks"] == {"database": "ok", "relay": "unavailable: not connected to the broker",
                                 "consumer": "unavailable: not connected to the broker"}
    # The loops keep retrying: the process is alive, and the metrics still answer (without the queue gauges).
    assert _get(port, "/healthz").status_code == 200
    samples = scrape(port)
    assert ("crm_worker_outbox_backlog", ()) in samples
    assert not any(name == "crm_worker_queue_ready_messages" for name, _labels in samples)


def test_crm_worker_serves_its_port_and_keeps_working_when_the_port_is_taken(make_database, amqp_url, tmp_path):
    database_url = make_database("contacts")
    SUITE.migrate("contacts", database_url)
    port = free_port()
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("CRM_") and not k.endswith("DATABASE_URL")}
    env = {**inherited, "CONTACTS_DATABASE_URL": database_url, "AMQP_URL": amqp_url,
           "CRM_WORKER_HOST": "127.0.0.1", "CRM_WORKER_PORT": str(port), "CRM_DATA_DIR": str(tmp_path),
           **_identity_env()}
    procs = []

    def start(log_name: str) -> subprocess.Popen:
        with open(tmp_path / log_name, "wb") as log:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen([sys.executable, "-m", "crm", "worker", "contacts"], env=env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(proc)
        return proc

    def answers() -> bool:
        try:
            return _get(port, "/readyz").status_code == 200
        except requests.ConnectionError:
            return False

    try:
        first = start("first.log")
        wait_until(answers, timeout=60, message="`crm worker contacts` ready on CRM_WORKER_PORT")
        # A second worker on the same port cannot serve it, says so, and still runs its loops.
        second = start("second.log")
        wait_until(lambda: b"cannot serve" in (tmp_path / "second.log").read_bytes(), timeout=60,
                   message="the second worker reports the taken port")
        assert second.poll() is None
        assert "CRM_WORKER_PORT" in (tmp_path / "second.log").read_text()
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0
    finally:
        for proc in procs:
            stop_process(proc)
