"""A throwaway service schema (outbox + inbox + a counter) for testing the messaging kit on real parts."""
from __future__ import annotations

import json
import uuid

import pika
from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from services.common.broker import connection_parameters
from services.common.catalog import EXCHANGE
from services.common.db import make_base, make_engine, make_session_factory, messaging_models
from services.common.runtime import Runtime
from services.common.settings import Settings

Base = make_base()
Outbox, Inbox = messaging_models(Base)


class Counter(Base):
    __tablename__ = "counters"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


def runtime_on(settings: Settings) -> Runtime:
    engine = make_engine(settings.database_url)
    Base.metadata.create_all(engine)
    return Runtime(settings=settings, engine=engine, session_factory=make_session_factory(engine),
                   outbox_model=Outbox, inbox_model=Inbox)


class Observer:
    """A private queue bound to every event type on the exchange, to see what was published."""

    def __init__(self, amqp_url: str, binding: str = "#"):
        self.conn = pika.BlockingConnection(connection_parameters(amqp_url))
        self.channel = self.conn.channel()
        self.channel.exchange_declare(EXCHANGE, exchange_type="topic", durable=True)
        self.queue = self.channel.queue_declare("", exclusive=True).method.queue
        self.channel.queue_bind(self.queue, EXCHANGE, routing_key=binding)

    def drain(self, expected: int, timeout: float = 60) -> list[dict]:
        """Collect messages until `expected` arrived or `timeout` passed."""
        out = []
        for method, _props, body in self.channel.consume(self.queue, inactivity_timeout=timeout, auto_ack=True):
            if method is None:
                break
            out.append(json.loads(body))
            if len(out) >= expected:
                break
        self.channel.cancel()
        return out

    def close(self):
        if self.conn.is_open:
            self.conn.close()


def publish_raw(amqp_url: str, routing_key: str, body: str, message_id: str | None = None) -> None:
    conn = pika.BlockingConnection(connection_parameters(amqp_url))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish(EXCHANGE, routing_key, body,
                         pika.BasicProperties(delivery_mode=2, message_id=message_id or str(uuid.uuid4()), type=routing_key))
    finally:
        conn.close()
