"""The unit of work: one transaction around a state change and the outbox events it records."""
from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from .catalog import Event, make_event


class UnitOfWork:
    """`with uow:` opens a transaction; `uow.commit()` commits the change and its events together.

    Re-entrant: a use case called inside an outer unit of work (an event handler that also writes the
    inbox row) joins the outer transaction, and only the outermost commit really commits.
    """

    def __init__(self, session_factory: sessionmaker, outbox_model, *, source: str,
                 correlation_id: str | None = None, causation_id: str | None = None):
        self._session_factory = session_factory
        self._outbox_model = outbox_model
        self.source = source
        self.correlation_id = correlation_id
        self.causation_id = causation_id
        self.session: Session | None = None
        self.events: list[Event] = []
        self._depth = 0

    def __enter__(self) -> "UnitOfWork":
        if self._depth == 0:
            self.session = self._session_factory()
            self.events = []
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

    def add_event(self, event_type: str, data: dict, *, subject=None) -> Event:
        """Validate an integration event and write it to the outbox in this transaction."""
        event = make_event(event_type, data, source=self.source, subject=subject,
                           correlationid=self.correlation_id, causationid=self.causation_id)
        self.session.add(self._outbox_model(event_id=event.id, event_type=event.type, payload=event.to_json()))
        self.events.append(event)
        return event

    def commit(self) -> None:
        """Commit the change and its events, or flush only when an outer unit of work owns the transaction."""
        if self._depth > 1:
            self.session.flush()
        else:
            self.session.commit()

    def rollback(self) -> None:
        """Undo everything since the transaction began."""
        self.session.rollback()
