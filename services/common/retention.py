"""Retention: the worker deletes published outbox rows, inbox rows and idempotency keys older than
CRM_RETENTION_DAYS, in short transactions of at most PURGE_BATCH rows, so no lock is held for long.

Safe with several workers on one database: rows are picked with `FOR UPDATE SKIP LOCKED` (PostgreSQL), so two
purges take disjoint rows, and what one deletes the other simply no longer finds. Unpublished outbox rows are
never deleted, whatever their age.
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from sqlalchemy import Table, delete, or_, select, tuple_

from .db import utcnow
from .idempotency import COMPLETED

log = logging.getLogger("crm.retention")

PURGE_BATCH = 5000  # rows per transaction
PURGE_INTERVAL = 3600.0  # seconds between two passes
FIRST_PASS_AFTER = 60.0  # seconds after start-up: let the relay and consumer connect first
IDEMPOTENCY_TABLE = "idempotency_keys"


class RetentionPurge:
    """Deletes what outlived the retention period from one service database."""

    def __init__(self, session_factory, outbox_model, inbox_model, *, retention_days: int,
                 batch_size: int = PURGE_BATCH, interval: float = PURGE_INTERVAL,
                 first_pass_after: float = FIRST_PASS_AFTER):
        if retention_days < 1 or batch_size < 1:
            raise ValueError("retention_days and batch_size must be at least 1")
        self._session_factory = session_factory
        self.outbox: Table = outbox_model.__table__
        self.inbox: Table = inbox_model.__table__
        # Every service defines its idempotency keys on the same declarative base as its messaging tables.
        self.idempotency: Table | None = outbox_model.metadata.tables.get(IDEMPOTENCY_TABLE)
        self.retention = timedelta(days=retention_days)
        self.batch_size = batch_size
        self.interval = interval
        self.first_pass_after = first_pass_after
        self.passes = 0
        self._stop = threading.Event()

    # -- the thread ------------------------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None) -> None:
        """Purge every `interval` seconds until `stop` is set; a failed pass is logged and tried next time."""
        self._stop = stop or self._stop
        if self._stop.wait(self.first_pass_after):
            return
        while not self._stop.is_set():
            try:
                deleted = self.purge_once()
                if any(deleted.values()):
                    log.info("retention purge deleted %s", deleted, extra={"event": "retention.purged", **deleted})
            except Exception:  # noqa: BLE001 — the database may be briefly away; the next pass catches up
                log.warning("retention purge failed; trying again in %.0fs", self.interval, exc_info=True)
            self._stop.wait(self.interval)

    # -- one pass --------------------------------------------------------------------------------------
    def purge_once(self, now: datetime | None = None) -> dict[str, int]:
        """Delete everything older than the retention period; returns rows deleted per table."""
        now = now or utcnow()
        cutoff = now - self.retention
        deleted = {"outbox": self._purge_outbox(cutoff), "inbox": self._purge_inbox(cutoff)}
        if self.idempotency is not None:
            deleted["idempotency_keys"] = self._purge_idempotency(cutoff, now)
        self.passes += 1
        return deleted

    def _purge_outbox(self, cutoff: datetime) -> int:
        # Walk the table from its oldest seq in primary-key windows instead of filtering on published_at (which
        # has no index): the oldest rows come first, so the walk stops at the first window that reaches rows
        # written after the cutoff, and a pass over a table with nothing to delete reads one window.
        t = self.outbox
        after, total = None, 0
        while not self._stop.is_set():
            with self._session_factory() as session, session.begin():
                window = select(t.c.seq, t.c.created_at).order_by(t.c.seq).limit(self.batch_size)
                if after is not None:
                    window = window.where(t.c.seq > after)
                rows = session.execute(window).all()
                if not rows:
                    break
                first, last = rows[0].seq, rows[-1].seq
                doomed = (select(t.c.seq)
                          .where(t.c.seq.between(first, last), t.c.published_at < cutoff)
                          .with_for_update(skip_locked=True))
                total += session.execute(delete(t).where(t.c.seq.in_(doomed))).rowcount
            if len(rows) < self.batch_size or rows[-1].created_at >= cutoff:
                break
            after = last
        return total

    def _purge_inbox(self, cutoff: datetime) -> int:
        t = self.inbox
        doomed = (select(t.c.event_id, t.c.handler).where(t.c.processed_at < cutoff)
                  .limit(self.batch_size).with_for_update(skip_locked=True))
        return self._delete_in_batches(delete(t).where(tuple_(t.c.event_id, t.c.handler).in_(doomed)))

    def _purge_idempotency(self, cutoff: datetime, now: datetime) -> int:
        t = self.idempotency
        # A claim still inside its lease belongs to a running request (one that took over an old key), however
        # old the key: only completed keys and abandoned claims go.
        doomed = (select(t.c.principal, t.c.key)
                  .where(t.c.created_at < cutoff,
                         or_(t.c.status == COMPLETED, t.c.locked_until.is_(None), t.c.locked_until < now))
                  .order_by(t.c.created_at).limit(self.batch_size).with_for_update(skip_locked=True))
        return self._delete_in_batches(delete(t).where(tuple_(t.c.principal, t.c.key).in_(doomed)))

    def _delete_in_batches(self, statement) -> int:
        total = 0
        while not self._stop.is_set():
            with self._session_factory() as session, session.begin():
                count = session.execute(statement).rowcount
            total += count
            if count < self.batch_size:
                break
        return total
