"""Event consumer: manual acks after the handler's transaction, inbox idempotency, retries, DLQ."""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from typing import Callable

import pika
from marshmallow import ValidationError
from sqlalchemy.exc import IntegrityError

from .broker import (ATTEMPT_HEADER, ERROR_HEADER, Bindings, connection_parameters, declare_topology, dlq_name,
                     queue_name, retry_queue_name)
from .catalog import Event, UnknownEventType, parse_event
from .uow import UnitOfWork

log = logging.getLogger("crm.consumer")

Handler = Callable[[UnitOfWork, Event], None]


class InboxDispatcher:
    """Runs a handler and records (event id, handler) in the inbox in one transaction."""

    def __init__(self, uow_factory: Callable[..., UnitOfWork], inbox_model, handlers: dict[str, Handler]):
        self._uow_factory = uow_factory
        self._inbox = inbox_model
        self.handlers = handlers

    def dispatch(self, event: Event) -> bool:
        """Handle `event` once; returns False when the inbox shows it was handled before."""
        handler = self.handlers[event.type]
        name = f"{handler.__module__}.{handler.__qualname__}"
        uow = self._uow_factory(correlation_id=event.correlationid or str(event.id), causation_id=str(event.id))
        try:
            with uow:
                if uow.session.get(self._inbox, (event.id, name)) is not None:
                    return False
                uow.session.add(self._inbox(event_id=event.id, handler=name, event_type=event.type))
                uow.session.flush()
                handler(uow, event)
                uow.commit()
                return True
        except IntegrityError:
            # A concurrent delivery of the same event may have won the race for the inbox row.
            with uow:
                if uow.session.get(self._inbox, (event.id, name)) is not None:
                    return False
            raise


class Consumer:
    """Consumes a service's quorum queue on a blocking pika connection and reconnects after failures."""

    def __init__(self, service: str, amqp_url: str, dispatcher: InboxDispatcher, *, bindings: Bindings,
                 retry_delays: tuple[float, ...], prefetch: int = 100):
        bound = set(bindings.get(service, ()))
        if bound != set(dispatcher.handlers):
            raise ValueError(f"{service}: the topology binds {sorted(bound)} but the handlers take "
                             f"{sorted(dispatcher.handlers)}; derive the bindings from the handlers")
        self.service = service
        self.bindings = bindings
        self.amqp_url = amqp_url
        self.dispatcher = dispatcher
        self.retry_delays = retry_delays
        self.prefetch = prefetch
        self.handled = 0
        self._stop = threading.Event()

    def run(self, stop: threading.Event | None = None) -> None:
        """Consume until `stop` is set; a lost connection is retried with backoff, losing nothing."""
        self._stop = stop or self._stop
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self._consume()
                backoff = 0.5
            except Exception:  # noqa: BLE001 — broker gone or channel closed: reconnect
                log.warning("consumer connection lost; reconnecting in %.1fs", backoff, exc_info=True)
            if not self._stop.is_set():
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _consume(self) -> None:
        conn = pika.BlockingConnection(connection_parameters(self.amqp_url))
        try:
            channel = conn.channel()
            declare_topology(channel, self.bindings, self.retry_delays)
            channel.confirm_delivery()
            channel.basic_qos(prefetch_count=self.prefetch)
            log.info("consumer connected", extra={"event": "consumer.connected"})
            for method, props, body in channel.consume(queue_name(self.service), inactivity_timeout=0.5):
                if self._stop.is_set():
                    break
                if method is None:
                    continue
                self._on_message(channel, method, props, body)
            channel.cancel()
        finally:
            if conn.is_open:
                conn.close()

    def _on_message(self, channel, method, props, body) -> None:
        started = time.perf_counter()
        try:
            event = parse_event(body)
        except (ValidationError, UnknownEventType) as exc:
            # A malformed or unknown event can never succeed: park it at once.
            self._dead_letter(channel, props, body, f"invalid event: {exc}")
            channel.basic_ack(method.delivery_tag)
            return
        try:
            fresh = self.dispatcher.dispatch(event)
        except Exception as exc:  # noqa: BLE001 — any handler failure is retried, then dead-lettered
            log.warning("handler failed for %s %s: %s", event.type, event.id, exc,
                        extra={"event": "handler.failed", "correlation_id": event.correlationid})
            self._retry_or_dead_letter(channel, props, body, exc)
            channel.basic_ack(method.delivery_tag)
            return
        channel.basic_ack(method.delivery_tag)
        self.handled += 1
        log.info("handled %s", event.type, extra={
            "event": "event.handled" if fresh else "event.duplicate", "event_type": event.type,
            "event_id": str(event.id), "correlation_id": event.correlationid,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2)})

    def _retry_or_dead_letter(self, channel, props, body, exc: Exception) -> None:
        headers = dict(props.headers or {})
        attempt = int(headers.get(ATTEMPT_HEADER, 0))
        error = f"{type(exc).__name__}: {exc}"[:1000]
        if attempt < len(self.retry_delays):
            headers.update({ATTEMPT_HEADER: attempt + 1, ERROR_HEADER: error})
            # The copy is confirmed before the original is acked, so a crash in between duplicates
            # (harmless, the inbox absorbs it) and never loses the event.
            channel.basic_publish("", retry_queue_name(self.service, self.retry_delays[attempt]), body,
                                  _copy_props(props, headers))
        else:
            self._dead_letter(channel, props, body, error)

    def _dead_letter(self, channel, props, body, error: str) -> None:
        headers = dict(props.headers or {})
        headers.update({ERROR_HEADER: error[:1000], "x-crm-dead-lettered-at": datetime.now(timezone.utc).isoformat()})
        channel.basic_publish("", dlq_name(self.service), body, _copy_props(props, headers))
        log.error("event dead-lettered: %s", error, extra={"event": "event.dead_lettered"})


def _copy_props(props, headers: dict) -> pika.BasicProperties:
    return pika.BasicProperties(content_type=props.content_type, delivery_mode=2, message_id=props.message_id,
                                type=props.type, headers=headers)


def list_dead_letters(service: str, amqp_url: str, limit: int = 100) -> list[dict]:
    """Read up to `limit` dead letters without removing them."""
    conn = pika.BlockingConnection(connection_parameters(amqp_url))
    try:
        channel = conn.channel()
        out = []
        for _ in range(limit):
            method, props, body = channel.basic_get(dlq_name(service), auto_ack=False)
            if method is None:
                break
            headers = props.headers or {}
            out.append({"message_id": props.message_id, "type": props.type,
                        "error": _text(headers.get(ERROR_HEADER)),
                        "dead_lettered_at": _text(headers.get("x-crm-dead-lettered-at")),
                        "attempts": headers.get(ATTEMPT_HEADER, 0), "body": body.decode("utf-8", "replace")})
        # Closing the channel returns every unacked message to the queue, in order.
        channel.close()
        return out
    finally:
        conn.close()


def replay_dead_letters(service: str, amqp_url: str, limit: int | None = None) -> int:
    """Move dead letters back to the service queue with a fresh retry budget; returns how many."""
    conn = pika.BlockingConnection(connection_parameters(amqp_url))
    moved = 0
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        # Only what is dead now: an event that fails again at once must not be replayed in a loop.
        waiting = channel.queue_declare(dlq_name(service), passive=True).method.message_count
        limit = waiting if limit is None else min(limit, waiting)
        while moved < limit:
            method, props, body = channel.basic_get(dlq_name(service), auto_ack=False)
            if method is None:
                break
            headers = {k: v for k, v in (props.headers or {}).items() if k not in (ATTEMPT_HEADER,)}
            headers["x-crm-replayed"] = True
            channel.basic_publish("", queue_name(service), body, _copy_props(props, headers))
            channel.basic_ack(method.delivery_tag)
            moved += 1
        return moved
    finally:
        conn.close()


def _text(value) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value
