"""Outbox relay: publishes outbox rows to RabbitMQ with asynchronous publisher confirms.

Rows are claimed with a lease (and `FOR UPDATE SKIP LOCKED` on PostgreSQL), so several relays can run
side by side without publishing the same row twice in the normal case; a relay that crashes leaves its
lease to expire and another relay re-publishes those rows. Delivery is at-least-once; consumers
de-duplicate through their inbox.

On PostgreSQL a unit of work that wrote outbox rows issues `NOTIFY crm_outbox` in its transaction, and the
relay LISTENs on a connection of its own, so it publishes as soon as a commit lands; the poll every
`poll_interval` remains the source of truth (a notification is lost while the listener reconnects).
"""
from __future__ import annotations

import logging
import threading
import uuid
from datetime import timedelta
from operator import itemgetter
from typing import NamedTuple

import pika
from pika.spec import Basic
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.engine import make_url

from .broker import connection_parameters
from .catalog import EXCHANGE
from .db import is_database_unavailable, utcnow

log = logging.getLogger("crm.outbox")

# The channel a committing unit of work notifies. LISTEN/NOTIFY is scoped to one database, and each service
# owns its database, so one name serves every service.
OUTBOX_NOTIFY_CHANNEL = "crm_outbox"
# How often the relay's loop looks at the stop flag when nothing else wakes it.
STOP_CHECK_INTERVAL = 0.2
# How many claimed batches may wait for their confirms while the next is published.
BATCHES_IN_FLIGHT = 3
# Confirmed rows are marked published at the latest this long after their confirm, even while later batches
# are still in flight: waiting for an empty window could wait forever under steady traffic, and a row left
# unmarked past its lease would be published again.
MARK_CONFIRMED_WITHIN = 0.01


class PendingMessage(NamedTuple):
    """A claimed outbox row, published as stored (the payload is never parsed again)."""

    seq: int
    event_id: uuid.UUID
    event_type: str
    payload: str


class OutboxStore:
    """Claims, marks and releases outbox rows of one service database.

    Each operation is one statement, built once per store. On PostgreSQL it runs in autocommit (a single
    UPDATE is atomic on its own), so no BEGIN/COMMIT round trips surround it and no ORM session is made: at
    one event at a time a claim cost ~1 ms of CPU through a session and ~0.2 ms this way. On SQLite it runs in
    a transaction that takes the write lock up front (db._sqlite_begin).
    """

    def __init__(self, session_factory, outbox_model, *, lease_seconds: float = 15.0):
        engine = session_factory.kw["bind"]
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT") \
            if engine.dialect.name == "postgresql" else engine
        self._model = outbox_model
        self._lease = timedelta(seconds=lease_seconds)
        self.owner = uuid.uuid4().hex
        table = outbox_model.__table__
        c = table.c
        free = c.published_at.is_(None) & (c.lease_until.is_(None) | (c.lease_until < bindparam("now")))
        # A CTE is evaluated once: as an `IN (subquery)` PostgreSQL may run the locking subquery again for each
        # row it updates, skip the rows it has just updated and claim more than `limit` (a test pins this).
        # leased_runs.LeasedRunner._claim_first avoids the same trap for one row by locking first, then updating.
        candidates = (select(c.seq).where(free).order_by(c.seq).limit(bindparam("limit"))
                      .with_for_update(skip_locked=True)  # rendered on PostgreSQL; SQLite serialises writers anyway
                      .cte("candidates"))
        # `free` is repeated so a row another relay claimed meanwhile is not re-claimed on re-check.
        self._claim = (update(table).where(c.seq == candidates.c.seq, free)
                       .values(lease_owner=bindparam("owner"), lease_until=bindparam("until"), attempts=c.attempts + 1)
                       .returning(c.seq, c.event_id, c.event_type, c.payload))
        self._mark = (update(table).where(c.seq.in_(bindparam("seqs", expanding=True)))
                      .values(published_at=bindparam("at"), lease_owner=None, lease_until=None))
        mine = update(table).where(c.lease_owner == bindparam("owner"), c.published_at.is_(None))
        self._release_all = mine.values(lease_owner=None, lease_until=None)
        self._release_some = mine.where(c.seq.in_(bindparam("seqs", expanding=True))) \
            .values(lease_owner=None, lease_until=None)

    def _run(self, stmt, params: dict):
        with self._engine.begin() as conn:
            result = conn.execute(stmt, params)
            return result.all() if result.returns_rows else None

    def claim(self, limit: int) -> list[PendingMessage]:
        """Lease up to `limit` unpublished rows whose lease is free or expired, oldest first."""
        now = utcnow()
        rows = self._run(self._claim, {"now": now, "limit": limit, "owner": self.owner, "until": now + self._lease})
        return [PendingMessage._make(row) for row in sorted(rows, key=itemgetter(0))]

    def mark_published(self, seqs: list[int]) -> None:
        """Record that the broker confirmed these rows (one UPDATE)."""
        if seqs:
            self._run(self._mark, {"seqs": list(seqs), "at": utcnow()})

    def release(self, seqs: list[int] | None = None) -> None:
        """Give up this relay's lease on unconfirmed rows (all of them when `seqs` is None)."""
        if seqs is None:
            self._run(self._release_all, {"owner": self.owner})
        elif seqs:
            self._run(self._release_some, {"owner": self.owner, "seqs": list(seqs)})

    def unpublished_count(self) -> int:
        """How many rows still wait for the broker's confirm."""
        with self._engine.connect() as conn:
            return conn.scalar(select(func.count()).select_from(self._model.__table__)
                               .where(self._model.__table__.c.published_at.is_(None)))


def listen_dsn(database_url: str | None) -> str | None:
    """The libpq address to LISTEN on for `database_url`, or None when it is not PostgreSQL (SQLite polls)."""
    if not database_url or not database_url.startswith("postgresql"):
        return None
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class OutboxRelay:
    """Publishes claimed rows in batches on an asynchronous pika connection and marks them on confirm.

    Up to BATCHES_IN_FLIGHT batches are published before their confirms are in, so claiming the next batch
    overlaps the broker's work on the last one; each delivery tag maps to its row's seq until confirmed.
    """

    def __init__(self, store: OutboxStore, amqp_url: str, *, retry_delays: tuple[float, ...],
                 batch_size: int = 200, poll_interval: float = 0.5, database_url: str | None = None, metrics=None):
        self.store = store
        self.amqp_url = amqp_url
        self.retry_delays = retry_delays
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.listen_dsn = listen_dsn(database_url)
        self.published = 0
        self.wakeups = 0  # notifications that woke the relay (tests and metrics read it)
        self.metrics = metrics  # a WorkerMetrics (services/common/worker_metrics.py), or None
        self.connected = False  # publishing with confirms on an open channel (the worker's /readyz reads it)
        self._stop = threading.Event()
        self._conn = None
        self._channel = None
        self._inflight: dict[int, int] = {}  # delivery tag -> outbox seq, in tag order
        self._acked: list[int] = []
        self._nacked: list[int] = []
        self._next_tag = 0
        self._timer = None
        self._mark_timer = None
        self._more = False  # the last claim was full: claim again as soon as the window allows
        self._wake_pending = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None) -> None:
        """Run until `stop` is set, reconnecting with backoff after any broker failure."""
        self._stop = stop or self._stop
        listener = None
        if self.listen_dsn:
            listener = threading.Thread(target=self._listen, name="outbox-listener", daemon=True)
            listener.start()
        backoff = 0.5
        try:
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
        finally:
            if listener:
                listener.join(5)

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
            self.connected = False
            self._timer = self._mark_timer = None
            if not self._conn.is_closed:
                try:
                    self._conn.close()
                    self._conn.ioloop.start()
                except Exception:  # noqa: BLE001
                    pass

    def _reset_inflight(self) -> None:
        acked = self._acked
        self._inflight.clear()
        self._acked, self._nacked = [], []
        self._next_tag = 0
        self._more = False
        self._wake_pending.clear()  # a wake-up queued on the closed loop never ran
        try:
            # Confirmed rows are marked, so only the unconfirmed ones are published again.
            self.store.mark_published(acked)
            self.published += len(acked)
            if self.metrics is not None:
                self.metrics.outbox_confirmed(len(acked), 0)
            self.store.release()
        except Exception:  # noqa: BLE001 — the lease will expire on its own
            log.warning("could not release outbox leases; they will expire")

    # -- waking up -----------------------------------------------------------------------------------
    def _listen(self) -> None:
        """LISTEN for committed outbox rows on a connection of its own and wake the relay's loop."""
        import psycopg

        backoff = 0.5
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.listen_dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {OUTBOX_NOTIFY_CHANNEL}")
                    backoff = 0.5
                    self.wake()  # rows committed before LISTEN took effect
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=STOP_CHECK_INTERVAL * 2):
                            self.wakeups += 1
                            self.wake()
            except Exception:  # noqa: BLE001 — polling covers the gap; listen again after a pause
                log.warning("outbox listener failed; polling until it is back", exc_info=True)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def wake(self) -> None:
        """Ask the relay to claim now (thread-safe; a burst of calls makes one wake-up)."""
        conn = self._conn
        if conn is None or not conn.is_open or self._wake_pending.is_set():
            return
        self._wake_pending.set()
        try:
            conn.ioloop.add_callback_threadsafe(self._on_wake)
        except Exception:  # noqa: BLE001 — the loop is closing; the next connection claims anyway
            self._wake_pending.clear()

    def _on_wake(self) -> None:
        self._wake_pending.clear()
        self._more = True
        self._schedule(0)

    # -- channel set-up ------------------------------------------------------------------------------
    def _on_channel_open(self, channel) -> None:
        self._channel = channel
        channel.add_on_close_callback(lambda ch, reason: self._conn.close() if self._conn.is_open else None)
        # Declaring through a short blocking-free sequence: exchange first, then confirms, then start.
        channel.exchange_declare(EXCHANGE, exchange_type="topic", durable=True,
                                 callback=lambda _frame: channel.confirm_delivery(self._on_confirm, callback=self._on_confirm_ok))

    def _on_confirm_ok(self, _frame) -> None:
        log.info("outbox relay connected", extra={"event": "relay.connected"})
        self.connected = True
        self._watch_stop()
        self._schedule(0)

    def _watch_stop(self) -> None:
        # Independent of the poll interval, which may be long now that notifications wake the relay.
        if self._stop.is_set():
            if self._conn.is_open:
                self._conn.close()
            return
        self._conn.ioloop.call_later(STOP_CHECK_INTERVAL, self._watch_stop)

    def _schedule(self, delay: float) -> None:
        """(Re)arm the one claim timer: an earlier wake-up replaces a later poll."""
        if self._timer is not None:
            self._conn.ioloop.remove_timeout(self._timer)
        self._timer = self._conn.ioloop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._tick()

    # -- publishing ----------------------------------------------------------------------------------
    def _tick(self) -> None:
        # `connected` only once the channel is in confirm mode: a wake-up between the channel opening and
        # Confirm.SelectOk published rows the broker never confirmed (and shifted every later delivery tag).
        if self._stop.is_set() or not self.connected or not self._channel or not self._channel.is_open:
            return
        room = BATCHES_IN_FLIGHT * self.batch_size - len(self._inflight)
        if room < self.batch_size:
            self._more = True  # the confirms in flight will call us back
            return
        try:
            batch = self.store.claim(self.batch_size)
        except Exception as exc:  # noqa: BLE001 — database briefly unavailable: try again later
            if is_database_unavailable(exc):  # a restart: expected, and the trace would say nothing new
                log.warning("outbox claim failed: database unavailable (%s)", type(exc).__name__,
                            extra={"event": "relay.database_unavailable"})
            else:
                log.exception("outbox claim failed")
            self._schedule(max(self.poll_interval, 1.0))
            return
        if self.metrics is not None:
            self.metrics.relay_batch(len(batch))
        publish = self._channel.basic_publish
        inflight = self._inflight
        tag = self._next_tag
        for seq, event_id, event_type, payload in batch:
            tag += 1
            inflight[tag] = seq
            publish(EXCHANGE, event_type, payload, pika.BasicProperties(
                content_type="application/cloudevents+json", delivery_mode=2, message_id=str(event_id),
                type=event_type))
        self._next_tag = tag
        self._more = len(batch) == self.batch_size
        # A full batch means more may be waiting: claim again once pika has sent this one (call_later(0) lets
        # the loop write and read first). Otherwise wait for a notification or the poll.
        self._schedule(0 if self._more else self.poll_interval)

    def _on_confirm(self, frame) -> None:
        method = frame.method
        target = self._acked if isinstance(method, Basic.Ack) else self._nacked
        inflight = self._inflight
        if method.multiple:
            # Tags were issued in increasing order and the dict keeps that order.
            while inflight:
                tag = next(iter(inflight))
                if tag > method.delivery_tag:
                    break
                target.append(inflight.pop(tag))
        else:
            seq = inflight.pop(method.delivery_tag, None)
            if seq is not None:
                target.append(seq)
        if len(self._acked) >= self.batch_size or self._nacked or not inflight:
            self._flush_confirmed()
            if self._more:
                self._schedule(0)
        elif self._acked and self._mark_timer is None:
            self._mark_timer = self._conn.ioloop.call_later(MARK_CONFIRMED_WITHIN, self._on_mark_timer)

    def _on_mark_timer(self) -> None:
        self._mark_timer = None
        if self._acked or self._nacked:
            self._flush_confirmed()
            if self._more:
                self._schedule(0)

    def _flush_confirmed(self) -> None:
        if self._mark_timer is not None:
            self._conn.ioloop.remove_timeout(self._mark_timer)
            self._mark_timer = None
        acked, nacked = self._acked, self._nacked
        self._acked, self._nacked = [], []
        try:
            self.store.mark_published(acked)
            self.store.release(nacked)
        except Exception:  # noqa: BLE001 — rows stay leased and are re-published after expiry
            log.exception("could not mark outbox rows published")
        self.published += len(acked)
        if self.metrics is not None:
            self.metrics.outbox_confirmed(len(acked), len(nacked))
        if nacked:
            log.warning("broker nacked %d events; they will be re-published", len(nacked))
            self._more = True
