"""Outbox relay: publishes outbox rows to RabbitMQ with asynchronous publisher confirms.

Rows are claimed with a lease (and `FOR UPDATE SKIP LOCKED` on PostgreSQL), so several relays can run
side by side without publishing the same row twice in the normal case; a relay that crashes leaves its
lease to expire and another relay re-publishes those rows. Delivery is at-least-once; consumers
de-duplicate through their inbox.
"""
from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import timedelta

import pika
from pika.spec import Basic
from sqlalchemy import select, update

from .broker import connection_parameters
from .catalog import EXCHANGE
from .db import utcnow

log = logging.getLogger("crm.outbox")


@dataclass(frozen=True)
class PendingMessage:
    seq: int
    event_id: uuid.UUID
    event_type: str
    payload: str


class OutboxStore:
    """Claims, marks and releases outbox rows of one service database."""

    def __init__(self, session_factory, outbox_model, *, lease_seconds: float = 15.0):
        self._session_factory = session_factory
        self._model = outbox_model
        self._lease = timedelta(seconds=lease_seconds)
        self.owner = uuid.uuid4().hex

    def claim(self, limit: int) -> list[PendingMessage]:
        """Lease up to `limit` unpublished rows whose lease is free or expired, oldest first."""
        m = self._model
        now = utcnow()
        candidates = (
            select(m.seq)
            .where(m.published_at.is_(None), (m.lease_until.is_(None)) | (m.lease_until < now))
            .order_by(m.seq)
            .limit(limit)
            .with_for_update(skip_locked=True)  # rendered on PostgreSQL; SQLite serialises writers anyway
        )
        with self._session_factory() as session, session.begin():
            rows = session.execute(
                update(m)
                .where(m.seq.in_(candidates))
                # Repeated so a row another relay claimed meanwhile is not re-claimed on re-check.
                .where(m.published_at.is_(None), (m.lease_until.is_(None)) | (m.lease_until < now))
                .values(lease_owner=self.owner, lease_until=now + self._lease, attempts=m.attempts + 1)
                .returning(m.seq, m.event_id, m.event_type, m.payload)
                .execution_options(synchronize_session=False)
            ).all()
        return sorted((PendingMessage(*row) for row in rows), key=lambda p: p.seq)

    def mark_published(self, seqs: list[int]) -> None:
        """Record that the broker confirmed these rows."""
        if not seqs:
            return
        m = self._model
        with self._session_factory() as session, session.begin():
            session.execute(
                update(m).where(m.seq.in_(seqs))
                .values(published_at=utcnow(), lease_owner=None, lease_until=None)
                .execution_options(synchronize_session=False)
            )

    def release(self, seqs: list[int] | None = None) -> None:
        """Give up this relay's lease on unconfirmed rows (all of them when `seqs` is None)."""
        m = self._model
        stmt = update(m).where(m.lease_owner == self.owner, m.published_at.is_(None))
        if seqs is not None:
            if not seqs:
                return
            stmt = stmt.where(m.seq.in_(seqs))
        with self._session_factory() as session, session.begin():
            session.execute(stmt.values(lease_owner=None, lease_until=None).execution_options(synchronize_session=False))

    def unpublished_count(self) -> int:
        """How many rows still wait for the broker's confirm."""
        from sqlalchemy import func

        with self._session_factory() as session:
            return session.scalar(select(func.count()).select_from(self._model).where(self._model.published_at.is_(None)))


class OutboxRelay:
    """Publishes claimed rows in batches on an asynchronous pika connection and marks them on confirm."""

    def __init__(self, store: OutboxStore, amqp_url: str, *, retry_delays: tuple[float, ...],
                 batch_size: int = 200, poll_interval: float = 0.5):
        self.store = store
        self.amqp_url = amqp_url
        self.retry_delays = retry_delays
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.published = 0
        self._stop = threading.Event()
        self._conn = None
        self._channel = None
        self._inflight: dict[int, int] = {}  # delivery tag -> outbox seq
        self._acked: list[int] = []
        self._nacked: list[int] = []
        self._next_tag = 0

    # -- lifecycle ---------------------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None) -> None:
        """Run until `stop` is set, reconnecting with backoff after any broker failure."""
        self._stop = stop or self._stop
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self._run_connection()
                backoff = 0.5
            except Exception:  # noqa: BLE001 — the loop must survive any broker or database failure
                log.exception("outbox relay connection failed")
            self._reset_inflight()
            if not self._stop.is_set():
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _run_connection(self) -> None:
        self._conn = pika.SelectConnection(
            connection_parameters(self.amqp_url),
            on_open_callback=lambda conn: conn.channel(on_open_callback=self._on_channel_open),
            on_open_error_callback=lambda conn, err: conn.ioloop.stop(),
            on_close_callback=lambda conn, reason: conn.ioloop.stop(),
        )
        try:
            self._conn.ioloop.start()
        finally:
            if not self._conn.is_closed:
                try:
                    self._conn.close()
                    self._conn.ioloop.start()
                except Exception:  # noqa: BLE001
                    pass

    def _reset_inflight(self) -> None:
        self._inflight.clear()
        self._acked, self._nacked = [], []
        self._next_tag = 0
        try:
            self.store.release()
        except Exception:  # noqa: BLE001 — the lease will expire on its own
            log.warning("could not release outbox leases; they will expire")

    # -- channel set-up ------------------------------------------------------------------------------
    def _on_channel_open(self, channel) -> None:
        self._channel = channel
        channel.add_on_close_callback(lambda ch, reason: self._conn.close() if self._conn.is_open else None)
        # Declaring through a short blocking-free sequence: exchange first, then confirms, then start.
        channel.exchange_declare(EXCHANGE, exchange_type="topic", durable=True,
                                 callback=lambda _frame: channel.confirm_delivery(self._on_confirm, callback=self._on_confirm_ok))

    def _on_confirm_ok(self, _frame) -> None:
        log.info("outbox relay connected", extra={"event": "relay.connected"})
        self._schedule(0)

    def _schedule(self, delay: float) -> None:
        self._conn.ioloop.call_later(delay, self._tick)

    # -- publishing ----------------------------------------------------------------------------------
    def _tick(self) -> None:
        if self._stop.is_set():
            if self._conn.is_open:
                self._conn.close()
            return
        if self._inflight or not self._channel or not self._channel.is_open:
            return
        try:
            batch = self.store.claim(self.batch_size)
        except Exception:  # noqa: BLE001 — database briefly unavailable: try again later
            log.exception("outbox claim failed")
            self._schedule(max(self.poll_interval, 1.0))
            return
        if not batch:
            self._schedule(self.poll_interval)
            return
        for msg in batch:
            self._next_tag += 1
            self._inflight[self._next_tag] = msg.seq
            self._channel.basic_publish(
                EXCHANGE, msg.event_type, msg.payload,
                pika.BasicProperties(
                    content_type="application/cloudevents+json", delivery_mode=2,
                    message_id=str(msg.event_id), type=msg.event_type,
                ),
            )

    def _on_confirm(self, frame) -> None:
        method = frame.method
        tags = [t for t in self._inflight if t <= method.delivery_tag] if method.multiple else [method.delivery_tag]
        target = self._acked if isinstance(method, Basic.Ack) else self._nacked
        for tag in tags:
            seq = self._inflight.pop(tag, None)
            if seq is not None:
                target.append(seq)
        if not self._inflight:
            acked, nacked = self._acked, self._nacked
            self._acked, self._nacked = [], []
            try:
                self.store.mark_published(acked)
                self.store.release(nacked)
            except Exception:  # noqa: BLE001 — rows stay leased and are re-published after expiry
                log.exception("could not mark outbox rows published")
            self.published += len(acked)
            if nacked:
                log.warning("broker nacked %d events; they will be re-published", len(nacked))
            self._schedule(0)
