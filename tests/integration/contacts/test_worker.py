"""The contacts worker on the real RabbitMQ: consume crm.lead.converted, relay crm.contact.created."""
from __future__ import annotations

import json
import time
import uuid

import pika
import pytest
from sqlalchemy import func, select

from crm.registry import SUITE
from services.common.broker import connection_parameters, declare_topology
from services.common.catalog import EXCHANGE, make_event
from services.contacts.models import OutboxMessage
from tests.support.suite import wait_until

from .conftest import Store

pytestmark = pytest.mark.integration


class Watcher:
    """A private queue on the exchange that collects the events published with one routing key."""

    def __init__(self, amqp_url: str, routing_key: str):
        self.connection = pika.BlockingConnection(connection_parameters(amqp_url))
        self.channel = self.connection.channel()
        self.channel.exchange_declare(EXCHANGE, exchange_type="topic", durable=True)
        self.queue = self.channel.queue_declare("", exclusive=True).method.queue
        self.channel.queue_bind(self.queue, EXCHANGE, routing_key=routing_key)

    def wait_for(self, predicate, timeout: float = 30) -> dict:
        """The first event that satisfies `predicate`; fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            method, _props, body = self.channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                time.sleep(0.05)
                continue
            event = json.loads(body)
            if predicate(event):
                return event
        raise AssertionError(f"no matching event within {timeout}s")

    def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()


def _publish(amqp_url: str, retry_delays, event) -> None:
    connection = pika.BlockingConnection(connection_parameters(amqp_url))
    try:
        channel = connection.channel()
        # Declared here too (idempotently), so the event cannot reach the exchange before the
        # contacts queue is bound, whatever the worker's start-up timing.
        declare_topology(channel, SUITE.bindings(), retry_delays)
        channel.confirm_delivery()
        channel.basic_publish(EXCHANGE, event.type, event.to_json(), pika.BasicProperties(
            content_type="application/cloudevents+json", delivery_mode=2, message_id=str(event.id), type=event.type))
    finally:
        connection.close()


def test_the_worker_turns_a_published_conversion_into_a_contact_and_announces_it(contacts_settings, amqp_url):
    watcher = Watcher(amqp_url, "crm.contact.created")
    worker = SUITE.create_worker("contacts", contacts_settings)
    store = Store(worker.runtime)
    worker.start()
    try:
        lead_id = uuid.uuid4()
        event = make_event("crm.lead.converted", {"lead_id": lead_id, "email": "Broker@Example.com",
                                                  "first_name": "Bea"}, source="/services/leads")
        _publish(amqp_url, contacts_settings.retry_delays, event)
        contacts = wait_until(store.contacts, timeout=30, message="the contact to be stored")
        assert [(c.email, c.first_name, c.origin_lead_id) for c in contacts] == [("Broker@Example.com", "Bea", lead_id)]
        announced = watcher.wait_for(lambda e: e["data"]["lead_id"] == str(lead_id))
        assert announced["type"] == "crm.contact.created"
        assert announced["data"] == {"contact_id": str(contacts[0].id), "email": "Broker@Example.com",
                                     "lead_id": str(lead_id), "matched": False}
        assert announced["causationid"] == str(event.id)
        wait_until(lambda: _nothing_unpublished(store), timeout=10, message="the outbox row marked published")
    finally:
        worker.stop()
        watcher.close()
        worker.runtime.engine.dispose()


def _nothing_unpublished(store) -> bool:
    with store.runtime.session_factory() as s:
        return s.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.published_at.is_(None))) == 0
