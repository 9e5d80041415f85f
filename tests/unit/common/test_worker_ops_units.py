"""The worker's ops port without a socket, broker or database: settings, per-worker ports, metrics, responses."""
from __future__ import annotations

import io
import json
from wsgiref.util import setup_testing_defaults

import pytest
from pika.frame import Method
from pika.spec import Basic

from crm.processes import WORKER_PORT_OFFSET, suite_processes
from crm.registry import SUITE
from services.common.outbox import OutboxRelay
from services.common.settings import SettingsError, from_env
from services.common.worker_http import OpsServer
from services.common.worker_metrics import QueueDepths, WorkerMetrics


def _settings(env: dict):
    # A worker's own settings need no identity key; require_secret=False leaves that part of the environment out.
    return from_env("contacts", env, require_secret=False)


# -- settings ----------------------------------------------------------------------------------------------
def test_a_plain_worker_serves_its_ops_port_on_9090_and_keeps_a_week_of_history():
    s = _settings({})
    assert (s.worker_host, s.worker_port, s.retention_days) == ("0.0.0.0", 9090, 7)


def test_the_worker_port_host_and_retention_are_read_from_the_environment():
    s = _settings({"CRM_WORKER_PORT": "9181", "CRM_WORKER_HOST": "127.0.0.1", "CRM_RETENTION_DAYS": "30"})
    assert (s.worker_host, s.worker_port, s.retention_days) == ("127.0.0.1", 9181, 30)
    assert _settings({"CRM_WORKER_HOST": "::"}).worker_host == "::"


@pytest.mark.parametrize("variable, raw", [
    ("CRM_WORKER_PORT", "0"),
    ("CRM_WORKER_PORT", "70000"),
    ("CRM_WORKER_PORT", "ops"),
    ("CRM_WORKER_HOST", "http://0.0.0.0"),
    ("CRM_WORKER_HOST", "0.0.0.0:9090"),
    ("CRM_WORKER_HOST", "a host"),
    ("CRM_RETENTION_DAYS", "0"),
    ("CRM_RETENTION_DAYS", "-7"),
    ("CRM_RETENTION_DAYS", "1.5"),
    ("CRM_RETENTION_DAYS", "a week"),
    ("CRM_RETENTION_DAYS", "4000"),
])
def test_a_bad_worker_setting_stops_start_up_naming_its_variable(variable, raw):
    with pytest.raises(SettingsError) as info:
        _settings({variable: raw})
    assert info.value.variable == variable
    assert variable in str(info.value)


# -- one ops port per worker in `crm run` ---------------------------------------------------------------------
def _worker_env(argv) -> dict[str, str]:
    assert argv[0] == "env" and argv[-2] == "worker"
    return dict(arg.split("=", 1) for arg in argv[1:] if "=" in arg)


def test_crm_run_gives_each_worker_its_web_port_plus_1000_on_the_loopback_interface():
    ports = {e.name: e.port for e in SUITE.entries if e.web}
    workers = {p.service: p for p in suite_processes(ports, {}) if p.kind == "worker"}
    assert set(workers) == {e.name for e in SUITE.workers}
    for service, proc in workers.items():
        assert _worker_env(proc.argv) == {"CRM_WORKER_HOST": "127.0.0.1",
                                          "CRM_WORKER_PORT": str(SUITE.entry(service).port + WORKER_PORT_OFFSET)}
        assert proc.argv[-2:] == ("worker", service)
    assert len({_worker_env(p.argv)["CRM_WORKER_PORT"] for p in workers.values()}) == len(workers)


def test_a_moved_web_port_moves_its_worker_port_and_the_environment_wins():
    ports = {e.name: e.port for e in SUITE.entries if e.web} | {"leads": 18082}
    leads = next(p for p in suite_processes(ports, {}) if p.name == "leads-worker")
    assert _worker_env(leads.argv)["CRM_WORKER_PORT"] == "19082"
    env = {"CRM_WORKER_PORT": "9999", "CRM_WORKER_HOST": "0.0.0.0"}
    leads = next(p for p in suite_processes(ports, env) if p.name == "leads-worker")
    assert leads.argv[0] != "env"  # the worker reads both from the environment it shares


def test_a_web_port_too_high_for_its_worker_port_names_the_setting():
    ports = {e.name: e.port for e in SUITE.entries if e.web} | {"loyalty": 65000}
    with pytest.raises(SettingsError) as info:
        suite_processes(ports, {})
    assert info.value.variable == "CRM_WORKER_PORT"
    assert "CRM_LOYALTY_PORT" in str(info.value)


# -- metrics ------------------------------------------------------------------------------------------------
def _sample(metrics: WorkerMetrics, name: str, **labels) -> float:
    return metrics.registry.get_sample_value(name, {"service": "contacts", **labels}) or 0.0


def test_a_consumer_batch_counts_handled_duplicate_and_failed_events_per_type_and_its_size():
    metrics = WorkerMetrics("contacts")
    metrics.consumer_batch(4, [("crm.lead.converted", True), ("crm.lead.converted", True),
                               ("crm.purchase.recorded", False), ("crm.lead.converted", RuntimeError("no"))])
    lead = {"event_type": "crm.lead.converted"}
    assert _sample(metrics, "crm_worker_events_handled_total", **lead) == 2
    assert _sample(metrics, "crm_worker_events_failed_total", **lead) == 1
    assert _sample(metrics, "crm_worker_events_duplicate_total", event_type="crm.purchase.recorded") == 1
    assert _sample(metrics, "crm_worker_batch_size_count", loop="consumer") == 1
    assert _sample(metrics, "crm_worker_batch_size_sum", loop="consumer") == 4


def test_an_event_type_outside_the_catalog_is_counted_as_unknown():
    metrics = WorkerMetrics("contacts")
    metrics.event_dead_lettered(b"crm.lead.converted")
    metrics.event_dead_lettered("made.up.type")
    metrics.event_dead_lettered(None)
    assert _sample(metrics, "crm_worker_events_dead_lettered_total", event_type="crm.lead.converted") == 1
    assert _sample(metrics, "crm_worker_events_dead_lettered_total", event_type="unknown") == 2


class _Store:
    def mark_published(self, seqs):
        pass

    def release(self, seqs=None):
        pass


class _Conn:
    is_open = True

    class ioloop:  # the attribute pika's connection has
        @staticmethod
        def call_later(delay, callback):
            return 1

        @staticmethod
        def remove_timeout(handle):
            pass


def test_the_relay_reports_confirmed_and_refused_rows():
    metrics = WorkerMetrics("contacts")
    relay = OutboxRelay(_Store(), "amqp://localhost/", retry_delays=(1.0,), batch_size=10, metrics=metrics)
    relay._conn = _Conn()
    relay._inflight = {1: 101, 2: 102, 3: 103}
    relay._on_confirm(Method(1, Basic.Ack(delivery_tag=2, multiple=True)))
    relay._on_confirm(Method(1, Basic.Nack(delivery_tag=3)))
    assert _sample(metrics, "crm_worker_outbox_published_total") == 2
    assert _sample(metrics, "crm_worker_outbox_nacked_total") == 1


class CountingDepths(QueueDepths):
    """Queue depths read from a fake broker that counts the reads (a passive declare each, in production)."""

    def __init__(self, **kw):
        super().__init__("contacts", "amqp://localhost/", **kw)
        self.reads = 0

    def _read(self):
        self.reads += 1
        return {"crm.contacts": 7, "crm.contacts.dlq": None}


def test_queue_depths_are_read_once_per_cache_period_and_an_unreadable_queue_has_no_sample():
    cached = CountingDepths(cache_seconds=3600)
    assert cached.depths() == cached.depths() == {"crm.contacts": 7, "crm.contacts.dlq": None}
    assert cached.reads == 1
    uncached = CountingDepths(cache_seconds=0)
    uncached.depths()
    uncached.depths()
    assert uncached.reads == 2
    families = {f.name: f for f in cached.collect()}
    assert set(families) == {"crm_worker_queue_ready_messages"}
    assert families["crm_worker_queue_ready_messages"].samples[0].value == 7


# -- responses ----------------------------------------------------------------------------------------------
def _get(server: OpsServer, path: str, method: str = "GET"):
    environ = {"PATH_INFO": path, "REQUEST_METHOD": method, "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    seen = {}

    def start_response(status, headers):
        seen["status"], seen["headers"] = int(status.split()[0]), dict(headers)

    body = b"".join(server.app(environ, start_response))
    return seen["status"], seen["headers"], body


def _server(*, alive=True, database=None, relay=None) -> OpsServer:
    def failing_database():
        raise ConnectionRefusedError("secret detail that must not leak")

    return OpsServer("contacts", liveness=lambda: {"relay": True, "consumer": alive, "retention": True},
                     readiness={"database": failing_database if database else (lambda: None),
                                "relay": lambda: relay},
                     registry=WorkerMetrics("contacts").registry, host="127.0.0.1", port=0)


def test_healthz_names_a_dead_thread_in_a_503_problem():
    status, headers, body = _get(_server(), "/healthz")
    assert status == 200 and json.loads(body)["threads"] == {"relay": "alive", "consumer": "alive", "retention": "alive"}
    status, headers, body = _get(_server(alive=False), "/healthz")
    problem = json.loads(body)
    assert status == 503 and headers["Content-Type"] == "application/problem+json"
    assert problem["status"] == 503 and "consumer" in problem["detail"] and problem["threads"]["consumer"] == "dead"


def test_readyz_names_each_failing_check_without_its_details():
    status, _headers, body = _get(_server(), "/readyz")
    assert status == 200 and json.loads(body)["checks"] == {"database": "ok", "relay": "ok"}
    status, headers, body = _get(_server(database=True, relay="not connected to the broker"), "/readyz")
    problem = json.loads(body)
    assert status == 503 and headers["Content-Type"] == "application/problem+json"
    assert problem["checks"] == {"database": "unavailable: ConnectionRefusedError",
                                 "relay": "unavailable: not connected to the broker"}
    assert "database" in problem["detail"] and "relay" in problem["detail"]
    assert b"secret detail" not in body


def test_metrics_is_prometheus_text_and_other_paths_and_methods_are_problems():
    status, headers, body = _get(_server(), "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert b"crm_worker_events_handled_total" in body
    status, headers, body = _get(_server(), "/nope")
    assert status == 404 and headers["Content-Type"] == "application/problem+json"
    status, headers, body = _get(_server(), "/readyz", method="POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD" and json.loads(body)["status"] == 405
