"""Event consumer: batches of deliveries in one transaction, inbox idempotency, acks after commit, retries, DLQ."""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

import pika
from marshmallow import ValidationError
from sqlalchemy import insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError

from .broker import (ATTEMPT_HEADER, ERROR_HEADER, Bindings, connection_parameters, declare_topology, dlq_name,
                     queue_name, retry_queue_name)
from .catalog import Event, UnknownEventType, parse_event
from .db import is_database_unavailable
from .uow import UnitOfWork

log = logging.getLogger("crm.consumer")

Handler = Callable[[UnitOfWork, Event], None]
BatchHandler = Callable[[UnitOfWork, list[Event]], None]
# What happened to one event of a batch: True handled, False a duplicate the inbox absorbed, or the failure.
Outcome = bool | Exception

# How long the idle loop waits for a delivery before it looks at the stop flag again.
IDLE_WAIT = 0.5
# How often a long batch lets pika run (heartbeats, buffering new deliveries) between two events.
KEEPALIVE_EVERY = 1.0


class NoHandler(LookupError):
    """An event reached a service that has no handler for its type."""


def handler_name(handler: Handler | BatchHandler) -> str:
    """The inbox key of a handler: its module and qualified name (unchanged by @handles_batches)."""
    return f"{handler.__module__}.{handler.__qualname__}"


def handles_batches(handler: BatchHandler) -> BatchHandler:
    """Mark `handler(uow, events)` as taking every fresh event of its type in a batch at once.

    The dispatcher calls it once per batch with the events, in delivery order, whose inbox rows it just wrote
    (a one-element list when a failed batch is redone event by event). Events it records must name their own
    cause: pass `**event_cause(event)` to `uow.add_event` for the event that caused each.
    """
    handler.handles_batches = True
    return handler


def is_batch_handler(handler) -> bool:
    """Whether `handler` was marked with @handles_batches."""
    return getattr(handler, "handles_batches", False) is True


def ignores(predicate: Callable[[Event], bool]):
    """Mark a handler as having nothing to do for the events `predicate` is true of.

    Such an event is acked as handled without a transaction or an inbox row: it changes nothing, so handling it
    again on a redelivery changes nothing either. For a handler that acts on a few of its type's events (leads
    links only the contacts that a lead became); the predicate reads the event alone, never the database.
    The mark is an attribute on the function, so a decorator applied over this one that uses functools.wraps
    copies it to its wrapper (wraps updates __dict__); one that does not drops it, and the handler then sees
    every event again.
    """
    def mark(handler):
        handler.ignores = predicate
        return handler
    return mark


def _ignored(handler, event: Event) -> bool:
    predicate = getattr(handler, "ignores", None)
    return predicate is not None and bool(predicate(event))


def event_cause(event: Event) -> dict[str, str]:
    """The correlation and causation ids of what a handler records because of `event` (add_event keywords)."""
    return {"correlation_id": event.correlationid or str(event.id), "causation_id": str(event.id)}


class InboxDispatcher:
    """Runs handlers and records (event id, handler) in the inbox in the same transaction."""

    def __init__(self, uow_factory: Callable[..., UnitOfWork], inbox_model, handlers: dict[str, Handler]):
        self._uow_factory = uow_factory
        self._inbox = inbox_model
        self.handlers = handlers
        self._names = {event_type: handler_name(h) for event_type, h in handlers.items()}

    def _handler(self, event: Event) -> tuple[Handler, str]:
        try:
            return self.handlers[event.type], self._names[event.type]
        except KeyError:
            raise NoHandler(f"no handler for {event.type}; handled here: {', '.join(sorted(self.handlers))}") from None

    def dispatch(self, event: Event) -> bool:
        """Handle `event` once in its own transaction; returns False when the inbox shows it was handled before."""
        handler, name = self._handler(event)
        if _ignored(handler, event):
            return True
        uow = self._uow_factory(**event_cause(event))
        try:
            with uow:
                if uow.session.get(self._inbox, (event.id, name)) is not None:
                    return False
                uow.session.add(self._inbox(event_id=event.id, handler=name, event_type=event.type))
                uow.session.flush()
                if is_batch_handler(handler):
                    handler(uow, [event])
                else:
                    handler(uow, event)
                uow.commit()
                return True
        except IntegrityError:
            # A concurrent delivery of the same event may have won the race for the inbox row.
            with uow:
                if uow.session.get(self._inbox, (event.id, name)) is not None:
                    return False
            raise

    def dispatch_batch(self, events: Sequence[Event], *, between: Callable[[], None] = lambda: None) -> list[Outcome]:
        """Handle `events` in one transaction; one outcome per event, in order. Never raises for an event.

        When anything in the shared transaction fails, it is rolled back and every event is handled again in a
        transaction of its own, so a bad event fails alone and its neighbours commit. `between` runs between
        two handlers (the consumer uses it to keep its connection's heartbeats going). An unavailable database
        (db.is_database_unavailable) is no event's fault and is raised: the batch must wait, not spend retries.
        """
        if not events:
            return []
        try:
            # A batch of one (the common case at low traffic) goes this way too: the inbox row is claimed by the
            # statement that checks it, one round trip fewer than `dispatch`.
            return self._dispatch_together(events, between)
        except Exception as exc:  # noqa: BLE001 — isolated below, event by event
            if is_database_unavailable(exc):
                raise
            if len(events) == 1:
                return [exc]  # its failure is its own: the consumer retries or dead-letters it
            log.info("batch of %d failed (%s: %s); handling its events one by one", len(events),
                     type(exc).__name__, exc, extra={"event": "batch.split"})
        outcomes: list[Outcome] = []
        for event in events:
            try:
                outcomes.append(self.dispatch(event))
            except Exception as exc:  # noqa: BLE001 — the consumer retries or dead-letters it
                if is_database_unavailable(exc):
                    raise  # the events committed so far are absorbed by the inbox when redelivered
                outcomes.append(exc)
            between()
        return outcomes

    def _claim(self, session, keyed: list[tuple[Event, Handler, str]]) -> set[tuple]:
        """Write the inbox rows of a batch; returns the (event id, handler) pairs not handled before.

        Inbox rows first, all together: a concurrent consumer of the same event blocks here, not halfway. On
        PostgreSQL one INSERT ... ON CONFLICT DO NOTHING RETURNING (it waits for a concurrent claim of the same
        event and skips it once that commits); elsewhere one query for what was seen, then the insert.
        """
        inbox = self._inbox
        rows = {(event.id, name): {"event_id": event.id, "handler": name, "event_type": event.type}
                for event, _handler, name in keyed}
        if session.get_bind().dialect.name == "postgresql":
            table = inbox.__table__
            # Sorted: two consumers claiming overlapping redeliveries wait for each other in one order.
            stmt = (pg_insert(table).on_conflict_do_nothing().returning(table.c.event_id, table.c.handler))
            return {tuple(row) for row in session.execute(stmt, [rows[key] for key in sorted(rows, key=str)])}
        seen = set(session.execute(
            select(inbox.event_id, inbox.handler).where(inbox.event_id.in_({key[0] for key in rows}))).all())
        fresh = [key for key in rows if key not in seen]
        if fresh:
            session.execute(insert(inbox.__table__), [rows[key] for key in fresh])
        return set(fresh)

    def _dispatch_together(self, events: Sequence[Event], between: Callable[[], None]) -> list[Outcome]:
        keyed = [(event, *self._handler(event)) for event in events]
        ignored = {index for index, (event, handler, _name) in enumerate(keyed) if _ignored(handler, event)}
        if len(ignored) == len(keyed):
            return [True] * len(keyed)  # nothing to do: no transaction at all
        uow = self._uow_factory()
        with uow:
            session = uow.session
            claimed = self._claim(session, [item for index, item in enumerate(keyed) if index not in ignored])
            outcomes: list[Outcome] = []
            fresh = []
            for index, (event, handler, name) in enumerate(keyed):
                if index in ignored:
                    outcomes.append(True)
                    continue
                if (event.id, name) not in claimed:
                    outcomes.append(False)  # handled before, or twice in this very batch
                    continue
                claimed.discard((event.id, name))
                fresh.append((event, handler, name))
                outcomes.append(True)
            if fresh:
                together: dict[str, tuple[BatchHandler, list[Event]]] = {}
                for event, handler, name in fresh:
                    if is_batch_handler(handler):
                        together.setdefault(name, (handler, []))[1].append(event)
                        continue
                    # Events a handler records are caused by (and correlated with) the event it handles.
                    cause = event_cause(event)
                    uow.correlation_id, uow.causation_id = cause["correlation_id"], cause["causation_id"]
                    handler(uow, event)
                    between()
                # A batch handler names the cause of each event it records itself (event_cause).
                uow.correlation_id = uow.causation_id = None
                for handler, batch in together.values():
                    handler(uow, batch)
                    between()
                uow.commit()
            return outcomes


class Consumer:
    """Consumes a service's quorum queue on a blocking pika connection, in batches, and reconnects after failures.

    A batch is up to `batch_size` deliveries, gathered for at most `batch_linger` seconds once the first one
    is there. Its events are handled in one transaction; then failures are copied to their retry queue (or the
    DLQ) with a confirm, and only then is the whole batch acked at once (`multiple=True`). A crash before that
    ack redelivers the whole batch, and the inbox absorbs what was already committed.
    """

    def __init__(self, service: str, amqp_url: str, dispatcher: InboxDispatcher, *, bindings: Bindings,
                 retry_delays: tuple[float, ...], prefetch: int = 500, batch_size: int = 200,
                 batch_linger: float = 0.005, metrics=None):
        bound = set(bindings.get(service, ()))
        if bound != set(dispatcher.handlers):
            raise ValueError(f"{service}: the topology binds {sorted(bound)} but the handlers take "
                             f"{sorted(dispatcher.handlers)}; derive the bindings from the handlers")
        if batch_size < 1 or prefetch < 1 or batch_linger < 0:
            raise ValueError("batch_size and prefetch must be positive, batch_linger not negative")
        self.service = service
        self.bindings = bindings
        self.amqp_url = amqp_url
        self.dispatcher = dispatcher
        self.retry_delays = retry_delays
        self.prefetch = prefetch
        # The broker never has more than `prefetch` deliveries unacked, so a larger batch could not fill.
        self.batch_size = min(batch_size, prefetch)
        self.batch_linger = batch_linger
        self.handled = 0
        self.batches = 0
        self.metrics = metrics  # a WorkerMetrics (services/common/worker_metrics.py), or None
        self.connected = False  # consuming on an open connection (the worker's /readyz reads it)
        self._stop = threading.Event()

    def run(self, stop: threading.Event | None = None) -> None:
        """Consume until `stop` is set; a lost connection is retried with backoff, losing nothing."""
        self._stop = stop or self._stop
        backoff = 0.5
        while not self._stop.is_set():
            batches = self.batches
            try:
                self._consume()
                backoff = 0.5
            except Exception as exc:  # noqa: BLE001 — broker gone or channel closed: reconnect
                if is_database_unavailable(exc):
                    # Closing the connection returned the unacked batch to the queue, with its retries unspent.
                    log.warning("database unavailable (%s); the batch went back to the queue, consuming again in "
                                "%.1fs", type(exc).__name__, backoff, extra={"event": "consumer.database_unavailable"})
                else:
                    log.warning("consumer connection lost; reconnecting in %.1fs", backoff, exc_info=True)
            if self.batches > batches:
                backoff = 0.5  # that connection handled batches: a new failure starts the backoff afresh
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
            # Deliveries are only buffered by the callback; they are handled below, outside pika's dispatch.
            pending: deque = deque()
            channel.basic_consume(queue_name(self.service),
                                  on_message_callback=lambda _ch, method, props, body: pending.append((method, props, body)))
            log.info("consumer connected", extra={"event": "consumer.connected"})
            self.connected = True
            keepalive = _KeepAlive(conn)
            while not self._stop.is_set():
                if not pending:
                    # Returns as soon as a delivery is dispatched; pika services heartbeats meanwhile.
                    conn.process_data_events(time_limit=IDLE_WAIT)
                    continue
                if len(pending) < self.batch_size and self.batch_linger:
                    deadline = time.monotonic() + self.batch_linger
                    while len(pending) < self.batch_size and (left := deadline - time.monotonic()) > 0:
                        conn.process_data_events(time_limit=left)
                batch = [pending.popleft() for _ in range(min(self.batch_size, len(pending)))]
                self._handle_batch(channel, batch, keepalive)
        finally:
            self.connected = False
            if conn.is_open:
                conn.close()  # unacked deliveries go back to the queue

    def _handle_batch(self, channel, batch: list, keepalive: "_KeepAlive") -> None:
        started = time.perf_counter()
        parsed = []
        for method, props, body in batch:
            try:
                event = parse_event(body)
            except (ValidationError, UnknownEventType) as exc:
                # A malformed or unknown event can never succeed: park it at once.
                self._dead_letter(channel, props, body, f"invalid event: {exc}")
                continue
            if event.type not in self.dispatcher.handlers:
                # The bindings come from the handlers, so only a stale binding left on the broker gets here.
                self._dead_letter(channel, props, body, f"{self.service} has no handler for {event.type} "
                                                        f"(a binding the handlers do not take?)")
                continue
            parsed.append((event, props, body))
        outcomes = self.dispatcher.dispatch_batch([p[0] for p in parsed], between=keepalive)
        duration_ms = round((time.perf_counter() - started) * 1000, 2)
        for (event, props, body), outcome in zip(parsed, outcomes):
            if isinstance(outcome, Exception):
                log.warning("handler failed for %s %s: %s", event.type, event.id, outcome,
                            extra={"event": "handler.failed", "correlation_id": event.correlationid})
                # The copy is confirmed before the batch is acked below, so a crash in between duplicates
                # (harmless, the inbox absorbs it) and never loses the event.
                self._retry_or_dead_letter(channel, props, body, outcome)
                continue
            log.info("handled %s", event.type, extra={
                "event": "event.handled" if outcome else "event.duplicate", "event_type": event.type,
                "event_id": str(event.id), "correlation_id": event.correlationid, "batch": len(batch),
                "duration_ms": duration_ms})
        # Deliveries arrive in tag order and every earlier one was acked with an earlier batch.
        channel.basic_ack(batch[-1][0].delivery_tag, multiple=True)
        self.handled += sum(1 for outcome in outcomes if not isinstance(outcome, Exception))
        self.batches += 1
        if self.metrics is not None:
            self.metrics.consumer_batch(len(batch), [(p[0].type, o) for p, o in zip(parsed, outcomes)])

    def _retry_or_dead_letter(self, channel, props, body, exc: Exception) -> None:
        headers = dict(props.headers or {})
        attempt = int(headers.get(ATTEMPT_HEADER, 0))
        error = f"{type(exc).__name__}: {exc}"[:1000]
        if attempt < len(self.retry_delays) and not isinstance(exc, NoHandler):
            headers.update({ATTEMPT_HEADER: attempt + 1, ERROR_HEADER: error})
            channel.basic_publish("", retry_queue_name(self.service, self.retry_delays[attempt]), body,
                                  _copy_props(props, headers))
        else:
            self._dead_letter(channel, props, body, error)

    def _dead_letter(self, channel, props, body, error: str) -> None:
        headers = dict(props.headers or {})
        headers.update({ERROR_HEADER: error[:1000], "x-crm-dead-lettered-at": datetime.now(timezone.utc).isoformat()})
        channel.basic_publish("", dlq_name(self.service), body, _copy_props(props, headers))
        log.error("event dead-lettered: %s", error, extra={"event": "event.dead_lettered"})
        if self.metrics is not None:
            self.metrics.event_dead_lettered(props.type)


class _KeepAlive:
    """Lets pika run now and then during a long batch, so heartbeats go out and the broker keeps us."""

    def __init__(self, conn):
        self._conn = conn
        self._last = time.monotonic()

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self._last >= KEEPALIVE_EVERY and self._conn.is_open:
            self._last = now
            try:
                # Only buffers new deliveries (the consume callback appends), never handles them re-entrantly.
                self._conn.process_data_events(time_limit=0)
            except Exception:  # noqa: BLE001 — the batch still commits; its ack fails and we reconnect
                log.warning("consumer connection lost during a batch", exc_info=True)


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
