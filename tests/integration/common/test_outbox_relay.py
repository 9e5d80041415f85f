"""The outbox relay on the real PostgreSQL and RabbitMQ."""
from __future__ import annotations

import threading
import uuid

import pytest

from services.common.outbox import OutboxRelay, OutboxStore
from tests.support.suite import wait_until

from .messaging import Outbox, Observer, runtime_on

pytestmark = pytest.mark.integration


def _record(runtime, n: int) -> None:
    with runtime.uow() as uow:
        for _ in range(n):
            uow.add_event("crm.lead.created", {"lead_id": uuid.uuid4(), "email": "a@example.com", "score": 1})
        uow.commit()


def _relay(runtime, **kw) -> OutboxRelay:
    s = runtime.settings
    store = OutboxStore(runtime.session_factory, Outbox, lease_seconds=kw.pop("lease", 2.0))
    return OutboxRelay(store, s.amqp_url, retry_delays=s.retry_delays, batch_size=kw.pop("batch", 100), poll_interval=0.05)


def test_two_relays_publish_every_row_exactly_once(make_database, make_settings, amqp_url):
    runtime = runtime_on(make_settings("leads", make_database("relay")))
    observer = Observer(amqp_url)
    _record(runtime, 1000)
    stop = threading.Event()
    relays = [_relay(runtime), _relay(runtime)]
    threads = [threading.Thread(target=r.run, args=(stop,)) for r in relays]
    for t in threads:
        t.start()
    try:
        store = relays[0].store
        wait_until(lambda: store.unpublished_count() == 0, timeout=60, message="all outbox rows published")
        received = observer.drain(1000, timeout=20)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        observer.close()
    ids = [m["id"] for m in received]
    assert len(ids) == 1000
    assert len(set(ids)) == 1000
    assert all(r.published > 0 for r in relays), "both relays should have taken a share"


def test_rows_a_crashed_relay_left_leased_are_republished(make_database, make_settings, amqp_url):
    runtime = runtime_on(make_settings("leads", make_database("relay")))
    observer = Observer(amqp_url)
    _record(runtime, 10)
    crashed = OutboxStore(runtime.session_factory, Outbox, lease_seconds=1.0)
    assert len(crashed.claim(100)) == 10  # claimed, never published: the process "died" here
    stop = threading.Event()
    relay = _relay(runtime)
    thread = threading.Thread(target=relay.run, args=(stop,))
    thread.start()
    try:
        wait_until(lambda: relay.store.unpublished_count() == 0, timeout=30, message="left-behind rows re-published")
        received = observer.drain(10, timeout=10)
    finally:
        stop.set()
        thread.join(10)
        observer.close()
    assert len({m["id"] for m in received}) == 10


def test_a_commit_wakes_the_relay_through_notify_long_before_its_poll(make_database, make_settings, amqp_url):
    runtime = runtime_on(make_settings("leads", make_database("relay")))
    observer = Observer(amqp_url)
    s = runtime.settings
    # An hour between polls: within this test only a notification can make the relay look again.
    relay = OutboxRelay(OutboxStore(runtime.session_factory, Outbox), s.amqp_url, retry_delays=s.retry_delays,
                        batch_size=100, poll_interval=3600, database_url=s.database_url)
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,))
    thread.start()
    try:
        _record(runtime, 1)  # published by the first claim on connect, or by its own notification
        wait_until(lambda: relay.published == 1, timeout=60, message="the first row published")
        woken = relay.wakeups
        _record(runtime, 3)
        wait_until(lambda: relay.published == 4, timeout=60, message="rows of the later commit published")
        assert relay.wakeups > woken
        assert len({m["id"] for m in observer.drain(4, timeout=20)}) == 4
    finally:
        stop.set()
        thread.join(10)
        observer.close()
    assert not thread.is_alive(), "the relay stops without waiting for its hour-long poll"



def test_the_store_runs_each_operation_as_one_statement_outside_a_transaction(make_database, make_settings):
    """On PostgreSQL claim, mark and release are single statements in autocommit: no BEGIN/COMMIT round trips."""
    from sqlalchemy import event

    runtime = runtime_on(make_settings("leads", make_database("relay")))
    _record(runtime, 3)
    store = OutboxStore(runtime.session_factory, Outbox, lease_seconds=30)
    sent, begun = [], []
    on_execute = lambda _c, _cur, statement, *_a: sent.append(statement.split()[0])  # noqa: E731
    on_begin = lambda conn: begun.append(conn.connection.driver_connection.autocommit)  # noqa: E731
    event.listen(runtime.engine, "before_cursor_execute", on_execute)
    event.listen(runtime.engine, "begin", on_begin)
    try:
        claimed = store.claim(2)
        store.mark_published([claimed[0].seq])
        store.release([claimed[1].seq])
        store.release()
    finally:
        event.remove(runtime.engine, "before_cursor_execute", on_execute)
        event.remove(runtime.engine, "begin", on_begin)
    # Exactly the limit, oldest first (an `IN (subquery)` claim took all three rows here).
    assert [m.seq for m in claimed] == sorted(m.seq for m in claimed) and len(claimed) == 2
    assert sent == ["WITH", "UPDATE", "UPDATE", "UPDATE"]  # the claim: WITH candidates ... UPDATE
    assert begun and all(begun)  # the driver connection was in autocommit for each of them
    # What each one did: one published, the rest free again and claimable, oldest first.
    assert store.unpublished_count() == 2
    assert [m.seq for m in store.claim(10)] == [claimed[1].seq, claimed[1].seq + 1]
