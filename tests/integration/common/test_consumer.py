"""The consumer on the real PostgreSQL and RabbitMQ: inbox idempotency, retries, dead letters, replay."""
from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import func, select

from services.common.catalog import make_event
from services.common.consumer import Consumer, InboxDispatcher, list_dead_letters, replay_dead_letters
from tests.support.suite import wait_until

from .messaging import Counter, Inbox, publish_raw, runtime_on

pytestmark = pytest.mark.integration

POISON = "poison@example.com"


class CountingHandler:
    """Counts each lead.converted per e-mail; fails for the poison address while `broken` is set."""

    def __init__(self):
        self.broken = True
        self.calls = 0
        self.__module__ = __name__
        self.__qualname__ = "CountingHandler"

    def __call__(self, uow, event):
        self.calls += 1
        if event.data["email"] == POISON and self.broken:
            raise RuntimeError("downstream refused")
        key = event.data["email"]
        row = uow.session.get(Counter, key)
        if row is None:
            uow.session.add(Counter(name=key, value=1))
        else:
            row.value += 1


def _event(email: str):
    return make_event("crm.lead.converted", {"lead_id": uuid.uuid4(), "email": email}, source="/tests")


def _count(runtime, email: str) -> int:
    with runtime.session_factory() as s:
        row = s.get(Counter, email)
        return row.value if row else 0


@pytest.fixture
def consumer_setup(make_database, make_settings, amqp_url):
    runtime = runtime_on(make_settings("contacts", make_database("consumer")))
    handler = CountingHandler()
    dispatcher = InboxDispatcher(lambda **kw: runtime.uow(**kw), Inbox, {"crm.lead.converted": handler})
    consumer = Consumer("contacts", amqp_url, dispatcher, bindings={"contacts": ("crm.lead.converted",)},
                        retry_delays=(0.2, 0.4), prefetch=50)
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,))
    thread.start()
    wait_until(lambda: _queue_exists(amqp_url), timeout=20, message="consumer topology declared")
    yield runtime, handler, consumer, amqp_url
    stop.set()
    thread.join(15)


def _queue_exists(amqp_url):
    try:
        list_dead_letters("contacts", amqp_url, limit=1)
        return True
    except Exception:  # noqa: BLE001
        return False


def test_an_event_delivered_twice_has_its_effect_once(consumer_setup):
    runtime, handler, consumer, amqp_url = consumer_setup
    event = _event("twice@example.com")
    publish_raw(amqp_url, event.type, event.to_json())
    publish_raw(amqp_url, event.type, event.to_json())
    wait_until(lambda: consumer.handled >= 2, timeout=20, message="both deliveries handled")
    assert _count(runtime, "twice@example.com") == 1
    with runtime.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(Inbox)) == 1


def test_a_failing_event_is_dead_lettered_after_retries_while_later_events_flow_and_replay_brings_it_back(consumer_setup):
    runtime, handler, consumer, amqp_url = consumer_setup
    poison = _event(POISON)
    publish_raw(amqp_url, poison.type, poison.to_json(), message_id=str(poison.id))
    later = [_event(f"later{i}@example.com") for i in range(20)]
    for e in later:
        publish_raw(amqp_url, e.type, e.to_json())
    wait_until(lambda: all(_count(runtime, e.data["email"]) == 1 for e in later), timeout=30, message="later events handled")
    letters = wait_until(lambda: list_dead_letters("contacts", amqp_url), timeout=30, message="poison in the DLQ")
    assert [letter["message_id"] for letter in letters] == [str(poison.id)]
    assert "downstream refused" in letters[0]["error"]
    assert handler.calls >= 3 + 20  # first try plus two retries, then the 20 others
    assert _count(runtime, POISON) == 0

    # Listing is not destructive.
    assert len(list_dead_letters("contacts", amqp_url)) == 1

    handler.broken = False
    assert replay_dead_letters("contacts", amqp_url) == 1
    wait_until(lambda: _count(runtime, POISON) == 1, timeout=20, message="replayed event handled")
    assert list_dead_letters("contacts", amqp_url) == []


def test_a_malformed_event_goes_straight_to_the_dead_letter_queue(consumer_setup):
    runtime, handler, consumer, amqp_url = consumer_setup
    publish_raw(amqp_url, "crm.lead.converted", '{"specversion": "1.0", "type": "crm.lead.converted"}')
    letters = wait_until(lambda: list_dead_letters("contacts", amqp_url), timeout=20, message="malformed event parked")
    assert "invalid event" in letters[0]["error"]
    assert handler.calls == 0


def test_replaying_an_event_that_fails_at_once_again_does_not_loop(consumer_setup):
    runtime, handler, consumer, amqp_url = consumer_setup
    publish_raw(amqp_url, "crm.lead.converted", '{"not": "an event"}')
    wait_until(lambda: list_dead_letters("contacts", amqp_url), timeout=20, message="malformed event parked")
    # It is parked again straight away after the replay; the replay still ends, having moved it once.
    assert replay_dead_letters("contacts", amqp_url) == 1
    wait_until(lambda: list_dead_letters("contacts", amqp_url), timeout=20, message="parked again")
