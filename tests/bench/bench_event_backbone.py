"""Event backbone end to end: leads outbox relay -> RabbitMQ -> contacts worker -> handler commit.

A steering script, not a test: `python tests/bench/bench_event_backbone.py [N]`. It prints
  * throughput: N `crm.lead.converted` events committed to a leads outbox on PostgreSQL up front, then the
    leads relay and the real contacts worker started; events/s until the contacts inbox holds all N;
  * the bare rate: a plain pika consumer acking N messages on the same broker, for the ratio;
  * latency: events committed one per transaction at half the measured rate; commit -> handler committed,
    p50/p99 (the consumer's dispatch is wrapped here to stamp the moment its transaction committed).
Everything runs on databases and a vhost of its own, dropped at the end.
"""
from __future__ import annotations

import logging
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pika  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from crm.registry import SUITE  # noqa: E402
from services.common import consumer as consumer_module  # noqa: E402
from services.common.broker import connection_parameters, declare_topology  # noqa: E402
from services.common.logs import JsonFormatter  # noqa: E402
from services.common.outbox import OutboxRelay, OutboxStore  # noqa: E402
from services.common.runtime import build_runtime  # noqa: E402
from services.common.settings import from_env  # noqa: E402
from services.contacts.models import InboxEntry as ContactsInbox  # noqa: E402
from services.leads.models import InboxEntry as LeadsInbox, OutboxMessage as LeadsOutbox  # noqa: E402
from tests.support import infra  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("BENCH_N", "20000"))
LATENCY_SECONDS = float(os.environ.get("BENCH_LATENCY_SECONDS", "10"))
handled_at: dict[str, float] = {}


def _stamp_handled() -> None:
    """Wrap the dispatcher so each event's handler commit is time-stamped (old and new consumer alike)."""
    cls = consumer_module.InboxDispatcher
    name = "dispatch_batch" if hasattr(cls, "dispatch_batch") else "dispatch"
    original = getattr(cls, name)

    def wrapped(self, arg, *a, **kw):
        result = original(self, arg, *a, **kw)
        now = time.perf_counter()
        for event in (arg if isinstance(arg, list) else [arg]):
            handled_at.setdefault(str(event.id), now)
        return result

    setattr(cls, name, wrapped)


def _commit(leads, n: int, per_commit: int) -> list[tuple[str, float]]:
    stamps = []
    for start in range(0, n, per_commit):
        with leads.uow() as uow:
            ids = [str(uow.add_event("crm.lead.converted", {"lead_id": uuid.uuid4(),
                                                            "email": f"b{uuid.uuid4().hex[:12]}@bench.example"}).id)
                   for _ in range(min(per_commit, n - start))]
            uow.commit()
        now = time.perf_counter()
        stamps.extend((i, now) for i in ids)
    return stamps


def _inbox_count(contacts) -> int:
    with contacts.session_factory() as s:
        return s.scalar(select(func.count()).select_from(ContactsInbox))


def _wait_inbox(contacts, target: int, timeout: float = 1800) -> None:
    deadline = time.monotonic() + timeout
    while _inbox_count(contacts) < target:
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out: {_inbox_count(contacts)} of {target} handled")
        time.sleep(0.05)


def bare_consume_rate(amqp_url: str, n: int) -> float:
    """A plain pika consumer (prefetch 200, one ack per message) on a queue pre-filled with n messages."""
    conn = pika.BlockingConnection(connection_parameters(amqp_url))
    ch = conn.channel()
    ch.queue_declare("bench.bare", durable=True, arguments={"x-queue-type": "quorum"})
    ch.confirm_delivery()
    body = b'{"x": 1}' * 40
    for _ in range(n):
        ch.basic_publish("", "bench.bare", body, pika.BasicProperties(delivery_mode=2))
    ch.basic_qos(prefetch_count=200)
    got = 0
    started = time.perf_counter()
    for method, _props, _body in ch.consume("bench.bare", inactivity_timeout=5):
        if method is None:
            break
        ch.basic_ack(method.delivery_tag)
        got += 1
        if got >= n:
            break
    elapsed = time.perf_counter() - started
    ch.cancel()
    conn.close()
    return got / elapsed


def main() -> None:
    vhost, amqp_url = infra.create_vhost()
    urls = {svc: infra.create_database(svc) for svc in ("leads", "contacts")}
    stop = threading.Event()
    worker = relay_thread = None
    try:
        for svc, url in urls.items():
            SUITE.migrate(svc, url)
        env = {"LEADS_DATABASE_URL": urls["leads"], "CONTACTS_DATABASE_URL": urls["contacts"], "AMQP_URL": amqp_url,
               "CRM_IDENTITY_SECRET": infra.IDENTITY_SECRET, **{k: v for k, v in os.environ.items() if k.startswith("CRM_")}}
        # Logs as in production (one JSON line per event at INFO), written nowhere.
        sink = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115
        sink.setFormatter(JsonFormatter("bench"))
        logging.getLogger().handlers = [sink]
        logging.getLogger().setLevel(logging.INFO)
        logging.getLogger("pika").setLevel(logging.WARNING)
        leads_settings = from_env("leads", env)
        leads = build_runtime(leads_settings, LeadsOutbox, LeadsInbox)
        contacts_settings = from_env("contacts", env)
        conn = pika.BlockingConnection(connection_parameters(amqp_url))
        declare_topology(conn.channel(), SUITE.bindings(), contacts_settings.retry_delays)
        conn.close()

        _commit(leads, N, 1000)
        _stamp_handled()
        worker = SUITE.create_worker("contacts", contacts_settings)
        contacts = worker.runtime
        worker.start()
        time.sleep(1.0)  # connected and idle before the clock starts
        relay = OutboxRelay(OutboxStore(leads.session_factory, LeadsOutbox, lease_seconds=leads_settings.relay_lease_seconds),
                            amqp_url, retry_delays=leads_settings.retry_delays, batch_size=leads_settings.relay_batch_size,
                            poll_interval=leads_settings.relay_poll_interval,
                            **({"database_url": urls["leads"]} if "database_url" in OutboxRelay.__init__.__code__.co_varnames else {}))
        started = time.perf_counter()
        relay_thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
        relay_thread.start()
        _wait_inbox(contacts, N)
        elapsed = time.perf_counter() - started
        rate = N / elapsed
        print(f"end to end: {N} events in {elapsed:.1f}s = {rate:,.0f} events/s", flush=True)

        bare = bare_consume_rate(amqp_url, N)
        print(f"bare pika consumer: {bare:,.0f} acks/s; end to end / bare = {rate / bare:.2f}", flush=True)

        target = float(os.environ.get("BENCH_LATENCY_RATE") or rate / 2)
        total = int(target * LATENCY_SECONDS)
        per_tick = max(1, round(target / 100))  # a commit every ~10 ms
        stamps = []
        t0 = time.perf_counter()
        for tick in range(0, (total + per_tick - 1) // per_tick):
            due = t0 + tick * per_tick / target
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            for i in range(per_tick):
                stamps.extend(_commit(leads, 1, 1))
        _wait_inbox(contacts, N + len(stamps))
        latencies = sorted((handled_at[i] - t) * 1000 for i, t in stamps if i in handled_at)
        p50 = statistics.median(latencies)
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(f"latency at {target:,.0f}/s offered ({len(stamps)} events, one per commit): "
              f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {latencies[-1]:.1f} ms", flush=True)
    finally:
        stop.set()
        if worker:
            worker.stop()
        if relay_thread:
            relay_thread.join(10)
        for url in urls.values():
            infra.drop_database(url)
        infra.delete_vhost(vhost)


if __name__ == "__main__":
    main()
