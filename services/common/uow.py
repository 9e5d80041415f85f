"""The unit of work: one transaction around a state change and the outbox events it records."""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import insert, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from .catalog import Event, make_event
from .db import ReadOnlyUnitOfWork

__all__ = ["ReadOnlyUnitOfWork", "UnitOfWork", "insert_or_reread"]

T = TypeVar("T")


class UnitOfWork:
    """`with uow:` opens a transaction; `uow.commit()` commits the change and its events together.

    Re-entrant: a use case called inside an outer unit of work (an event handler that also writes the
    inbox row) joins the outer transaction, and only the outermost commit really commits.

    A `read_only` unit of work (GET views) takes its sessions from a read-only session factory: no write
    lock on SQLite, autocommit reads on PostgreSQL. It records no events, cannot commit and cannot write.
    """

    def __init__(self, session_factory: sessionmaker, outbox_model, *, source: str,
                 correlation_id: str | None = None, causation_id: str | None = None, read_only: bool = False):
        self.read_only = read_only
        self._session_factory = session_factory
        self._outbox_model = outbox_model
        self.source = source
        self.correlation_id = correlation_id
        self.causation_id = causation_id
        self.session: Session | None = None
        self.events: list[Event] = []
        self._outbox_rows: list[dict] = []  # written by commit(), in the order recorded
        self._depth = 0

    def __enter__(self) -> "UnitOfWork":
        if self._depth == 0:
            self.session = self._session_factory()
            self.events = []
            self._outbox_rows = []
        self._depth += 1
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._depth -= 1
        if self._depth == 0:
            try:
                # close() ends the transaction, rolling back whatever was not committed. Unlike rollback()
                # it does not expire the loaded objects, so what a read-only use case returns stays
                # readable after the block (rollback() left them detached and expired).
                self.session.close()
            finally:
                self.session = None

    def add_event(self, event_type: str, data: dict, *, subject=None, correlation_id: str | None = None,
                  causation_id: str | None = None) -> Event:
        """Validate an integration event and write it to the outbox in this transaction.

        `correlation_id`/`causation_id` override the unit of work's own: a batch handler records events for
        several causes in one transaction.
        """
        if self.read_only:
            raise ReadOnlyUnitOfWork(f"a read-only unit of work cannot record {event_type}")
        event = make_event(event_type, data, source=self.source, subject=subject,
                           correlationid=correlation_id or self.correlation_id,
                           causationid=causation_id or self.causation_id)
        self._outbox_rows.append({"event_id": event.id, "event_type": event.type, "payload": event.to_json()})
        self.events.append(event)
        return event

    def _write_outbox(self) -> None:
        # One Core INSERT for the events recorded since the last write: an ORM object per row cost a unit-of-work
        # flush each. Nothing reads the outbox in the transaction that writes it.
        if self._outbox_rows:
            rows, self._outbox_rows = self._outbox_rows, []
            self.session.execute(_outbox_insert(self._outbox_model), rows)

    def commit(self) -> None:
        """Commit the change and its events, or flush only when an outer unit of work owns the transaction."""
        if self.read_only:
            raise ReadOnlyUnitOfWork("a read-only unit of work cannot commit; use a writing one")
        self._write_outbox()
        if self._depth > 1:
            self.session.flush()
        else:
            if self.events and self.session.get_bind().dialect.name == "postgresql":
                # Delivered when (and only if) this transaction commits: wakes the outbox relay at once.
                from .outbox import OUTBOX_NOTIFY_CHANNEL

                self.session.execute(text(f"NOTIFY {OUTBOX_NOTIFY_CHANNEL}"))
            self.session.commit()

    def rollback(self) -> None:
        """Undo everything since the transaction began."""
        self._outbox_rows = []
        self.session.rollback()


_OUTBOX_INSERTS: dict = {}


def _outbox_insert(outbox_model):
    """The INSERT of a service's outbox rows, built once per table (executed with a list of rows)."""
    stmt = _OUTBOX_INSERTS.get(outbox_model)
    if stmt is None:
        stmt = _OUTBOX_INSERTS[outbox_model] = insert(outbox_model.__table__)
    return stmt


def insert_or_reread(session: Session, *rows, reread: Callable[[], T | None]) -> T | None:
    """Insert `rows` (in order) in a savepoint; None when they went in, else the row that was there first.

    On a unique-key clash only the savepoint rolls back, so the caller's transaction (and a handler's inbox
    row in it) stays usable, and `reread` finds the row a concurrent writer committed first; on PostgreSQL
    our insert waited for that writer, so it is visible now. When `reread` finds nothing the clash was not
    the one expected (another constraint, or the winner was deleted meanwhile) and it is raised again.
    With no rows, the pending changes are flushed under the same rules (an update that may clash).
    """
    try:
        with session.begin_nested():
            for row in rows:
                session.add(row)
                session.flush()
            if not rows:
                session.flush()
    except IntegrityError:
        existing = reread()
        if existing is None:
            raise
        return existing
    return None
