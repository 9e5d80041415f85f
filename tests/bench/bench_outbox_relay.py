"""Outbox relay throughput: batched asynchronous confirms against one blocking confirm per message.

Run with `make bench`. Both sides publish the same N outbox rows from a PostgreSQL database to a vhost of
their own and mark them published; the figure is rows per second, and the ratio is relay / baseline.
"""
from __future__ import annotations

import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pika  # noqa: E402
from sqlalchemy import select, update  # noqa: E402

from services.common.broker import connection_parameters  # noqa: E402
from services.common.catalog import EXCHANGE  # noqa: E402
from services.common.db import utcnow  # noqa: E402
from services.common.outbox import OutboxRelay, OutboxStore  # noqa: E402
from services.common.settings import from_env  # noqa: E402
from tests.integration.common.messaging import Outbox, runtime_on  # noqa: E402
from tests.support import infra  # noqa: E402

N = int(os.environ.get("BENCH_N", "3000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def _fill(runtime, n):
    with runtime.uow() as uow:
        for _ in range(n):
            uow.add_event("crm.lead.created", {"lead_id": uuid.uuid4(), "email": "b@bench.example", "score": 5})
        uow.commit()


def _drain_queue(amqp_url):
    conn = pika.BlockingConnection(connection_parameters(amqp_url))
    ch = conn.channel()
    ch.exchange_declare(EXCHANGE, exchange_type="topic", durable=True)
    ch.queue_declare("bench.sink", durable=True)
    ch.queue_bind("bench.sink", EXCHANGE, routing_key="#")
    ch.queue_purge("bench.sink")
    conn.close()


def run_relay(runtime) -> float:
    s = runtime.settings
    store = OutboxStore(runtime.session_factory, Outbox, lease_seconds=30)
    relay = OutboxRelay(store, s.amqp_url, retry_delays=s.retry_delays, batch_size=s.relay_batch_size, poll_interval=0.01)
    stop = threading.Event()
    started = time.perf_counter()
    t = threading.Thread(target=relay.run, args=(stop,))
    t.start()
    while store.unpublished_count():
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    stop.set()
    t.join()
    return elapsed


def run_baseline(runtime) -> float:
    """The naive relay: a BlockingChannel with confirms, one publish (and one wait) per row, one UPDATE per row."""
    started = time.perf_counter()
    conn = pika.BlockingConnection(connection_parameters(runtime.settings.amqp_url))
    ch = conn.channel()
    ch.confirm_delivery()
    with runtime.session_factory() as session:
        rows = session.execute(select(Outbox.seq, Outbox.event_type, Outbox.payload)
                               .where(Outbox.published_at.is_(None)).order_by(Outbox.seq)).all()
        for seq, event_type, payload in rows:
            ch.basic_publish(EXCHANGE, event_type, payload, pika.BasicProperties(delivery_mode=2))
            session.execute(update(Outbox).where(Outbox.seq == seq).values(published_at=utcnow()))
            session.commit()
    conn.close()
    return time.perf_counter() - started


def main():
    vhost, amqp_url = infra.create_vhost()
    url = infra.create_database("bench")
    try:
        env = {"LEADS_DATABASE_URL": url, "AMQP_URL": amqp_url, "CRM_IDENTITY_PUBLIC_KEY": infra.IDENTITY_PUBLIC_KEY}
        runtime = runtime_on(from_env("leads", env))
        _drain_queue(amqp_url)
        results = {"relay (batched async confirms)": [], "baseline (blocking confirm per row)": []}
        for _ in range(ROUNDS):
            for name, fn in (("baseline (blocking confirm per row)", run_baseline), ("relay (batched async confirms)", run_relay)):
                _fill(runtime, N)
                results[name].append(N / fn(runtime))
        print(f"outbox relay, {N} events per round, {ROUNDS} rounds, PostgreSQL + RabbitMQ on loopback")
        for name, rates in results.items():
            print(f"  {name:38s} median {statistics.median(rates):8.0f} events/s  (runs: {', '.join(f'{r:.0f}' for r in rates)})")
        ratio = statistics.median(results["relay (batched async confirms)"]) / statistics.median(results["baseline (blocking confirm per row)"])
        print(f"  ratio relay / baseline: {ratio:.1f}x")
        runtime.engine.dispose()
    finally:
        infra.drop_database(url)
        infra.delete_vhost(vhost)


if __name__ == "__main__":
    main()
