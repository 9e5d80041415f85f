"""Read-only units of work on SQLite: no write lock, so readers never queue behind the writer."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import event, insert, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Mapped, mapped_column

from services.common.db import make_base, messaging_models
from services.common.runtime import build_runtime
from services.common.settings import Settings
from services.common.uow import ReadOnlyUnitOfWork

Base = make_base()
OutboxMessage, InboxEntry = messaging_models(Base)


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str]


@pytest.fixture
def runtime(tmp_path):
    rt = build_runtime(Settings(service="notes", database_url=f"sqlite:///{tmp_path / 'notes.db'}"),
                       OutboxMessage, InboxEntry)
    Base.metadata.create_all(rt.engine)
    with rt.engine.begin() as conn:
        conn.execute(insert(Note).values(id=1, text="committed"))

    # Fail at once instead of waiting out the 15 s busy timeout, so a lock wait shows up as an error.
    @event.listens_for(rt.engine, "connect")
    def _no_waiting(dbapi_connection, _record):
        dbapi_connection.execute("PRAGMA busy_timeout=0")

    rt.engine.dispose()  # connections opened above keep the 15 s timeout
    yield rt
    rt.engine.dispose()


def test_a_read_only_unit_of_work_reads_while_another_connection_holds_the_write_lock(runtime):
    writer = runtime.uow()
    with writer:
        writer.session.add(Note(id=2, text="uncommitted"))
        writer.session.flush()  # BEGIN IMMEDIATE: this connection now holds the write lock

        reader = runtime.uow(read_only=True)
        with reader:
            texts = reader.session.scalars(select(Note.text).order_by(Note.id)).all()

    assert texts == ["committed"]


def test_a_writing_unit_of_work_still_takes_the_write_lock_up_front(runtime):
    writer = runtime.uow()
    with writer:
        writer.session.add(Note(id=2, text="uncommitted"))
        writer.session.flush()

        second = runtime.uow()
        with pytest.raises(OperationalError, match="locked"):
            with second:
                second.session.scalars(select(Note.text)).all()


def test_a_read_only_unit_of_work_records_no_events_and_cannot_commit(runtime):
    reader = runtime.uow(read_only=True)
    with reader:
        with pytest.raises(ReadOnlyUnitOfWork):
            reader.add_event("crm.contact.updated", {"contact_id": uuid.uuid4(), "changed": ["email"]})
        with pytest.raises(ReadOnlyUnitOfWork):
            reader.commit()

    with runtime.session_factory() as session:
        assert session.scalars(select(OutboxMessage)).all() == []


def test_read_only_and_writing_units_of_work_share_one_pool(runtime):
    reader = runtime.uow(read_only=True)
    with reader:
        reader.session.scalars(select(Note)).all()

    assert runtime.read_session_factory.kw["bind"].pool is runtime.engine.pool
