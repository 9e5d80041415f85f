"""The unit of work: one transaction around a state change and the outbox events it records."""
from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import event, insert, text
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
        # (number, row) of each event recorded and not yet written, the number its place in `events`; commit()
        # writes them, in the order recorded.
        self._outbox_rows: list[tuple[int, dict]] = []
        # session transaction -> number of the first event recorded inside it (weak: a long unit of work with a
        # savepoint per row keeps no finished transaction alive)
        self._marks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._depth = 0

    def __enter__(self) -> "UnitOfWork":
        if self._depth == 0:
            self.session = self._session_factory()
            self.session.info[_UOW_KEY] = self
            self.events = []
            self._outbox_rows = []
            self._marks = weakref.WeakKeyDictionary()
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
        if not self.session.in_transaction():
            self.session.begin()  # so that a rollback before the first statement also drops this event
        self._outbox_rows.append(
            (len(self.events), {"event_id": event.id, "event_type": event.type, "payload": event.to_json()}))
        self.events.append(event)
        return event

    def write_outbox(self) -> None:
        """Write the events recorded so far to the outbox now, in one Core INSERT (commit() does it at the latest).

        Deferred to here because an ORM object per row cost a unit-of-work flush each. What a rollback undoes goes
        too: a savepoint that rolls back drops the events recorded inside it, a rollback of the transaction all of
        them (see _forget_rolled_back). Code that writes outbox rows itself in the same transaction calls this
        first, so the outbox keeps the order in which events were recorded.
        """
        if self._outbox_rows:
            rows, self._outbox_rows = self._outbox_rows, []
            self.session.execute(_outbox_insert(self._outbox_model), [row for _number, row in rows])

    def commit(self) -> None:
        """Commit the change and its events, or flush only when an outer unit of work owns the transaction."""
        if self.read_only:
            raise ReadOnlyUnitOfWork("a read-only unit of work cannot commit; use a writing one")
        self.write_outbox()
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


_UOW_KEY = "crm.unit_of_work"


@event.listens_for(Session, "after_transaction_create")
def _remember_mark(session: Session, transaction) -> None:
    uow = session.info.get(_UOW_KEY)
    if uow is not None:
        uow._marks[transaction] = len(uow.events)


@event.listens_for(Session, "after_soft_rollback")
def _forget_rolled_back(session: Session, previous_transaction) -> None:
    """Drop the events recorded inside a transaction that rolled back, as the ORM dropped the objects added in it.

    A savepoint's rollback drops those recorded since it began; any other rollback ends the database transaction,
    so every event not yet written goes (the written ones are rolled back by the database).
    """
    uow = session.info.get(_UOW_KEY)
    if uow is None:
        return
    # What the database rolled back: the nearest savepoint up the chain (a failed flush rolls back its own inner
    # transaction, whose boundary is the savepoint around it), else the whole transaction.
    boundary = previous_transaction
    while not boundary.nested and boundary.parent is not None:
        boundary = boundary.parent
    mark = uow._marks.get(boundary, 0) if boundary.nested else 0
    uow._outbox_rows = [(number, row) for number, row in uow._outbox_rows if number < mark]


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
