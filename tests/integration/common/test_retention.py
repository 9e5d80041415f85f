"""The retention purge on the real PostgreSQL (and the SQLite of `crm run`): old rows go, recent and unpublished rows stay."""
from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, insert, select

from services.common.db import (
    make_base,
    make_engine,
    make_session_factory,
    messaging_models,
    utcnow,
)
from services.common.idempotency import COMPLETED, IN_FLIGHT, idempotency_model
from services.common.retention import RetentionPurge
from services.common.runtime import Runtime
from services.common.worker import Worker
from tests.support.suite import wait_until

pytestmark = pytest.mark.integration

# A service-shaped schema of the test's own: the messaging tables and the idempotency keys on one base.
Base = make_base()
Outbox, Inbox = messaging_models(Base)
Keys = idempotency_model(Base)

NOW = utcnow()
OLD = NOW - timedelta(days=8)  # past the default 7 days
RECENT = NOW - timedelta(days=6)


@pytest.fixture(params=["postgresql", "sqlite"])
def session_factory(request, make_database, tmp_path):
    url = make_database("retention") if request.param == "postgresql" else f"sqlite:///{tmp_path / 'retention.db'}"
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    yield make_session_factory(engine)
    engine.dispose()


def _outbox_row(created, published=None, **extra) -> dict:
    return {"event_id": uuid.uuid4(), "event_type": "crm.lead.created", "payload": "{}", "created_at": created,
            "published_at": published, "attempts": 1 if published else 0, **extra}


def _add(session_factory, model, rows: list[dict]) -> None:
    with session_factory() as session, session.begin():
        session.execute(insert(model.__table__), rows)


def _count(session_factory, model, *where) -> int:
    with session_factory() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def _key(created, status, locked_until=None) -> dict:
    return {"principal": "key-1", "key": uuid.uuid4().hex, "fingerprint": "f" * 64, "status": status,
            "claim_token": uuid.uuid4().hex, "locked_until": locked_until, "created_at": created}


def test_old_rows_go_and_recent_and_unpublished_rows_stay(session_factory):
    _add(session_factory, Outbox, [
        _outbox_row(OLD, OLD),                           # published 8 days ago: goes
        _outbox_row(OLD - timedelta(days=30)),           # never published, however old: stays
        _outbox_row(OLD, RECENT),                        # written long ago, published 6 days ago: stays
        _outbox_row(RECENT, RECENT),                     # stays
        _outbox_row(NOW),                                # waiting for the relay: stays
    ])
    _add(session_factory, Inbox, [
        {"event_id": uuid.uuid4(), "handler": "h", "event_type": "t", "processed_at": OLD},
        {"event_id": uuid.uuid4(), "handler": "h", "event_type": "t", "processed_at": RECENT},
    ])
    _add(session_factory, Keys, [
        _key(OLD, COMPLETED),                            # goes
        _key(OLD, IN_FLIGHT, locked_until=OLD),          # an abandoned claim: goes
        _key(OLD, IN_FLIGHT, locked_until=NOW + timedelta(seconds=60)),  # a request running now: stays
        _key(RECENT, COMPLETED),                         # stays
    ])
    purge = RetentionPurge(session_factory, Outbox, Inbox, retention_days=7)

    assert purge.purge_once(NOW) == {"outbox": 1, "inbox": 1, "idempotency_keys": 2}

    assert _count(session_factory, Outbox) == 4
    assert _count(session_factory, Outbox, Outbox.published_at.is_(None)) == 2
    assert _count(session_factory, Inbox, Inbox.processed_at == RECENT) == 1
    assert _count(session_factory, Inbox) == 1
    with session_factory() as session:
        assert sorted((k.status, k.created_at == RECENT) for k in session.scalars(select(Keys))) == [
            (COMPLETED, True), (IN_FLIGHT, False)]
    assert purge.purge_once(NOW) == {"outbox": 0, "inbox": 0, "idempotency_keys": 0}


def test_the_purge_goes_through_every_batch_past_unpublished_rows(session_factory):
    # Unpublished rows between the old ones, more rows than one batch: every old published row goes in batches.
    rows = [_outbox_row(OLD, OLD) if i % 4 else _outbox_row(OLD) for i in range(40)] + [_outbox_row(NOW, NOW)]
    _add(session_factory, Outbox, rows)
    _add(session_factory, Inbox, [{"event_id": uuid.uuid4(), "handler": "h", "event_type": "t", "processed_at": OLD}
                                  for _ in range(23)])
    purge = RetentionPurge(session_factory, Outbox, Inbox, retention_days=7, batch_size=7)

    assert purge.purge_once(NOW) == {"outbox": 30, "inbox": 23, "idempotency_keys": 0}
    assert _count(session_factory, Outbox) == 11
    assert _count(session_factory, Outbox, Outbox.published_at.is_(None)) == 10


def test_a_longer_retention_keeps_more(session_factory):
    _add(session_factory, Outbox, [_outbox_row(OLD, OLD)])
    assert RetentionPurge(session_factory, Outbox, Inbox, retention_days=9).purge_once(NOW)["outbox"] == 0
    assert RetentionPurge(session_factory, Outbox, Inbox, retention_days=7).purge_once(NOW)["outbox"] == 1


def test_two_workers_purging_at_once_delete_every_old_row_once(make_database):
    engine = make_engine(make_database("retention"))
    Base.metadata.create_all(engine)
    factory = make_session_factory(engine)
    try:
        _add(factory, Outbox, [_outbox_row(OLD, OLD) for _ in range(3000)] + [_outbox_row(NOW)])
        _add(factory, Inbox, [{"event_id": uuid.uuid4(), "handler": "h", "event_type": "t", "processed_at": OLD}
                              for _ in range(3000)])
        purges = [RetentionPurge(factory, Outbox, Inbox, retention_days=7, batch_size=100) for _ in range(2)]
        results, errors = [], []

        def run(purge):
            try:
                results.append(purge.purge_once(NOW))
            except Exception as exc:  # noqa: BLE001 — reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(p,)) for p in purges]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == []
        assert sum(r["outbox"] for r in results) == 3000
        assert sum(r["inbox"] for r in results) == 3000
        assert _count(factory, Outbox) == 1 and _count(factory, Inbox) == 0
    finally:
        engine.dispose()


def test_the_worker_purges_on_a_thread_of_its_own(make_database, make_settings):
    settings = make_settings("contacts", make_database("retention"), CRM_RETENTION_DAYS="7",
                             AMQP_URL="amqp://guest:guest@127.0.0.1:1/%2F")  # the purge needs no broker
    engine = make_engine(settings.database_url)
    Base.metadata.create_all(engine)
    runtime = Runtime(settings=settings, engine=engine, session_factory=make_session_factory(engine),
                      outbox_model=Outbox, inbox_model=Inbox)
    worker = Worker(runtime, {}, {"contacts": ()})
    assert worker.retention.retention == timedelta(days=7)
    _add(runtime.session_factory, Outbox, [_outbox_row(OLD, OLD), _outbox_row(NOW, NOW)])
    worker.retention.first_pass_after = 0
    worker.start()
    try:
        wait_until(lambda: _count(runtime.session_factory, Outbox) == 1, timeout=30, message="old row purged")
        assert worker.threads_alive()["retention"] is True
    finally:
        worker.stop()
        engine.dispose()
