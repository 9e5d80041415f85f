"""Batched consumption on the real PostgreSQL and RabbitMQ: isolation of a bad event, redelivered batches."""
from __future__ import annotations

import threading
import uuid

import pika
import pytest
from sqlalchemy import func, select

from services.common.broker import connection_parameters, declare_topology, queue_name
from services.common.catalog import make_event
from services.common.consumer import Consumer, InboxDispatcher, handles_batches, list_dead_letters
from tests.support.suite import wait_until

from .messaging import Counter, Inbox, publish_raw, runtime_on

pytestmark = pytest.mark.integration

BINDINGS = {"contacts": ("crm.lead.converted",)}
RETRY_DELAYS = (0.2, 0.4)
POISON = "poison@example.com"


class RecordingHandler:
    """Counts each lead.converted per e-mail and remembers which unit of work ran it; fails for POISON."""

    def __init__(self):
        self.calls: list[tuple[str, int]] = []  # (email, id of the unit of work)
        self.__module__ = __name__
        self.__qualname__ = "RecordingHandler"

    def __call__(self, uow, event):
        email = event.data["email"]
        self.calls.append((email, id(uow)))
        if email == POISON:
            raise RuntimeError("downstream refused")
        row = uow.session.get(Counter, email)
        if row is None:
            uow.session.add(Counter(name=email, value=1))
        else:
            row.value += 1


class RecordingBatchHandler:
    """The same counting as RecordingHandler, as a batch handler: remembers each call's e-mails."""

    def __init__(self):
        self.calls: list[list[str]] = []
        self.__module__ = __name__
        self.__qualname__ = "RecordingBatchHandler"
        handles_batches(self)

    def __call__(self, uow, events):
        emails = [event.data["email"] for event in events]
        self.calls.append(emails)
        if POISON in emails:
            raise RuntimeError("downstream refused")
        for email in emails:
            row = uow.session.get(Counter, email)
            if row is None:
                uow.session.add(Counter(name=email, value=1))
            else:
                row.value += 1


class CrashBeforeFirstAck(InboxDispatcher):
    """The real dispatcher, but the process "dies" once right after a batch committed, before its ack."""

    def __init__(self, *args):
        super().__init__(*args)
        self.outcomes: list[list] = []
        self.crashed = False

    def dispatch_batch(self, events, **kw):
        outcomes = super().dispatch_batch(events, **kw)
        self.outcomes.append(outcomes)
        if not self.crashed:
            self.crashed = True
            raise ConnectionResetError("simulated crash between commit and ack")
        return outcomes


def _event(email: str):
    return make_event("crm.lead.converted", {"lead_id": uuid.uuid4(), "email": email}, source="/tests")


def _publish_all(amqp_url: str, events) -> None:
    """Declare the topology and queue every event before any consumer runs, so they can form one batch."""
    conn = pika.BlockingConnection(connection_parameters(amqp_url))
    try:
        channel = conn.channel()
        declare_topology(channel, BINDINGS, RETRY_DELAYS)
        channel.confirm_delivery()
        for e in events:
            channel.basic_publish("", queue_name("contacts"), e.to_json(),
                                  pika.BasicProperties(delivery_mode=2, message_id=str(e.id), type=e.type))
    finally:
        conn.close()


def _count(runtime, email: str) -> int:
    with runtime.session_factory() as s:
        row = s.get(Counter, email)
        return row.value if row else 0


def _inbox_rows(runtime) -> int:
    with runtime.session_factory() as s:
        return s.scalar(select(func.count()).select_from(Inbox))


@pytest.fixture
def run_consumer(make_database, make_settings, amqp_url):
    """Start a consumer on a fresh database: run_consumer(dispatcher_class) -> (runtime, handler, consumer)."""
    started = []
    runtime = runtime_on(make_settings("contacts", make_database("batches")))

    def start(dispatcher_class=InboxDispatcher, handler_class=RecordingHandler):
        handler = handler_class()
        dispatcher = dispatcher_class(lambda **kw: runtime.uow(**kw), Inbox, {"crm.lead.converted": handler})
        # A long linger only matters when the batch cannot fill: here it lets all queued deliveries arrive.
        consumer = Consumer("contacts", amqp_url, dispatcher, bindings=BINDINGS, retry_delays=RETRY_DELAYS,
                            prefetch=200, batch_size=100, batch_linger=1.0)
        stop = threading.Event()
        thread = threading.Thread(target=consumer.run, args=(stop,))
        thread.start()
        started.append((stop, thread))
        return runtime, handler, consumer

    yield start
    for stop, thread in started:
        stop.set()
        thread.join(15)
    runtime.engine.dispose()


def test_a_poison_event_in_the_middle_of_a_batch_alone_retries_and_dead_letters_while_the_others_commit_once(
        run_consumer, amqp_url):
    events = [_event(f"n{i}@example.com") for i in range(10)]
    poison = _event(POISON)
    events.insert(5, poison)
    _publish_all(amqp_url, events)
    runtime, handler, consumer = run_consumer()

    letters = wait_until(lambda: list_dead_letters("contacts", amqp_url), timeout=60, message="poison in the DLQ")
    assert [letter["message_id"] for letter in letters] == [str(poison.id)]
    assert letters[0]["attempts"] == len(RETRY_DELAYS)
    assert "downstream refused" in letters[0]["error"]
    wait_until(lambda: _inbox_rows(runtime) == 10, timeout=30, message="the ten good events in the inbox")
    assert all(_count(runtime, e.data["email"]) == 1 for e in events if e is not poison)
    assert _count(runtime, POISON) == 0
    # They were first tried together: the events before the poison ran in one shared unit of work.
    first_try = handler.calls[:6]
    assert [email for email, _ in first_try] == [e.data["email"] for e in events[:6]]
    assert len({uow for _, uow in first_try}) == 1
    # Then every event ran once more on its own, and the poison twice more from its retry queues.
    assert sum(1 for email, _ in handler.calls if email == POISON) == 2 + len(RETRY_DELAYS)


def test_a_poison_event_fails_a_batch_handler_alone_and_its_neighbours_commit_once(run_consumer, amqp_url):
    events = [_event(f"h{i}@example.com") for i in range(10)]
    poison = _event(POISON)
    events.insert(3, poison)
    _publish_all(amqp_url, events)
    runtime, handler, consumer = run_consumer(handler_class=RecordingBatchHandler)

    letters = wait_until(lambda: list_dead_letters("contacts", amqp_url), timeout=60, message="poison in the DLQ")
    assert [letter["message_id"] for letter in letters] == [str(poison.id)]
    assert letters[0]["attempts"] == len(RETRY_DELAYS)
    wait_until(lambda: _inbox_rows(runtime) == 10, timeout=30, message="the ten good events in the inbox")
    assert all(_count(runtime, e.data["email"]) == 1 for e in events if e is not poison)
    # One call for the whole batch first, then one single-event list per event, then the poison's retries.
    assert handler.calls[0] == [e.data["email"] for e in events]
    assert handler.calls[1:12] == [[e.data["email"]] for e in events]
    assert handler.calls[12:] == [[POISON]] * len(RETRY_DELAYS)


def test_a_batch_redelivered_after_a_crash_before_its_ack_is_absorbed_by_the_inbox(run_consumer, amqp_url):
    events = [_event(f"r{i}@example.com") for i in range(30)]
    _publish_all(amqp_url, events)
    runtime, handler, consumer = run_consumer(CrashBeforeFirstAck)
    dispatcher = consumer.dispatcher

    wait_until(lambda: consumer.handled >= 30, timeout=60, message="every event handled after the reconnect")
    first = dispatcher.outcomes[0]
    assert first and all(outcome is True for outcome in first)
    # The unacked first batch came back whole, and the inbox recognised every event of it.
    duplicates = sum(1 for batch in dispatcher.outcomes[1:] for outcome in batch if outcome is False)
    assert duplicates == len(first)
    assert _inbox_rows(runtime) == 30
    assert all(_count(runtime, e.data["email"]) == 1 for e in events)
    assert len(handler.calls) == 30  # no handler ran twice for one event


def test_an_event_the_service_has_no_handler_for_is_dead_lettered_with_a_clear_error(run_consumer, amqp_url):
    runtime, handler, consumer = run_consumer()
    wait_until(lambda: _queue_ready(amqp_url), timeout=20, message="consumer topology declared")
    stray = make_event("crm.lead.created", {"lead_id": uuid.uuid4(), "email": "s@example.com", "score": 1},
                       source="/tests")
    # Straight into the queue: the exchange binds only the types the handlers take.
    conn = pika.BlockingConnection(connection_parameters(amqp_url))
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        channel.basic_publish("", queue_name("contacts"), stray.to_json(),
                              pika.BasicProperties(delivery_mode=2, message_id=str(stray.id), type=stray.type))
    finally:
        conn.close()
    later = _event("after@example.com")
    publish_raw(amqp_url, later.type, later.to_json())

    letters = wait_until(lambda: list_dead_letters("contacts", amqp_url), timeout=30, message="stray event parked")
    assert [letter["message_id"] for letter in letters] == [str(stray.id)]
    assert "no handler for crm.lead.created" in letters[0]["error"]
    assert letters[0]["attempts"] == 0, "parked at once, never retried"
    wait_until(lambda: _count(runtime, "after@example.com") == 1, timeout=30, message="the next event still flows")
    assert handler.calls == [("after@example.com", handler.calls[0][1])]


def _queue_ready(amqp_url) -> bool:
    try:
        list_dead_letters("contacts", amqp_url, limit=1)
        return True
    except Exception:  # noqa: BLE001
        return False


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
def test_events_a_handler_ignores_are_handled_without_a_transaction_or_an_inbox_row(
        database, make_database, make_settings, tmp_path):
    """@ignores: nothing to do, so no transaction and no inbox row; the handler's other events go the usual way."""
    from sqlalchemy import event as sa_event

    from services.common.consumer import ignores

    url = make_database("ignores") if database == "postgresql" else f"sqlite:///{tmp_path / 'contacts.db'}"
    runtime = runtime_on(make_settings("contacts", url))
    handler = ignores(lambda event: event.data["email"].startswith("skip"))(RecordingBatchHandler())
    dispatcher = InboxDispatcher(runtime.uow, Inbox, {"crm.lead.converted": handler})
    begun = []
    sa_event.listen(runtime.engine, "begin", lambda conn: begun.append(conn))
    skipped = [_event("skip-1@example.com"), _event("skip-2@example.com")]
    assert dispatcher.dispatch_batch(skipped) == [True, True]
    assert dispatcher.dispatch_batch(skipped[:1]) == [True]  # a batch of one, and a redelivery
    assert dispatcher.dispatch(skipped[1]) is True  # the one-by-one path after a failed batch
    assert begun == [] and handler.calls == []  # (before _inbox_rows, which opens a transaction of its own)
    assert _inbox_rows(runtime) == 0

    wanted = _event("ann@example.com")
    assert dispatcher.dispatch_batch([skipped[0], wanted, skipped[1]]) == [True, True, True]
    assert handler.calls == [["ann@example.com"]] and _inbox_rows(runtime) == 1
    assert dispatcher.dispatch_batch([wanted, skipped[0]]) == [False, True]  # the wanted one was handled before
    assert _count(runtime, "ann@example.com") == 1 and _count(runtime, "skip-1@example.com") == 0
