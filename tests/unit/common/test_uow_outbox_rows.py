"""The unit of work writes its recorded events at commit; what a rollback undoes goes with them (SQLite)."""
from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import insert, select

from services.common.uow import UnitOfWork, insert_or_reread
from tests.support.messaging_tables import Outbox


def _uow(factory) -> UnitOfWork:
    return UnitOfWork(factory, Outbox, source="/services/test")


def _record(uow, name: str) -> None:
    uow.add_event("crm.lead.created", {"lead_id": uuid.uuid4(), "email": f"{name}@example.com", "score": 1})


def _written(factory) -> list[str]:
    """The outbox in seq order: each event's e-mail name, or the payload of a row written directly."""
    with factory() as s:
        payloads = list(s.scalars(select(Outbox.payload).order_by(Outbox.seq)))
    return [json.loads(p)["data"]["email"].split("@")[0] if p.startswith("{") else p for p in payloads]


def test_events_recorded_in_a_savepoint_that_rolls_back_are_not_written(factory):
    with _uow(factory) as uow:
        _record(uow, "before")
        with pytest.raises(RuntimeError), uow.session.begin_nested():
            _record(uow, "undone")
            raise RuntimeError("the step fails; its savepoint rolls back")
        with uow.session.begin_nested():
            _record(uow, "kept")  # a savepoint that commits keeps its events
        _record(uow, "after")
        uow.commit()
    assert _written(factory) == ["before", "kept", "after"]


def test_a_clash_in_insert_or_reread_drops_only_what_its_savepoint_recorded(factory):
    with _uow(factory) as uow:
        _record(uow, "first")
        uow.commit()
    with factory() as s:
        seq = s.scalar(select(Outbox.seq))
    with _uow(factory) as uow:
        _record(uow, "outer")
        clash = Outbox(seq=seq, event_id=uuid.uuid4(), event_type="x", payload="{}")
        assert insert_or_reread(uow.session, clash, reread=lambda: "there") == "there"
        uow.commit()
    assert _written(factory) == ["first", "outer"]


def test_a_rollback_of_the_transaction_drops_every_event_not_yet_written(factory):
    with _uow(factory) as uow:
        _record(uow, "gone")
        uow.session.rollback()
        _record(uow, "later")
        uow.commit()
    assert _written(factory) == ["later"]


def test_rows_written_directly_come_after_the_events_recorded_before_them(factory):
    with _uow(factory) as uow:
        _record(uow, "one")
        uow.write_outbox()  # as event_sql.payload_sql and segments' announce do before their own INSERT
        uow.session.execute(insert(Outbox.__table__), [{"event_id": uuid.uuid4(), "event_type": "x",
                                                        "payload": "two"}])
        _record(uow, "three")
        uow.commit()
    assert _written(factory) == ["one", "two", "three"]
