"""The outbox store on SQLite (`crm run`'s default database): claim, mark and release in a write transaction."""
from __future__ import annotations

import uuid

from services.common.outbox import OutboxStore
from services.common.uow import UnitOfWork
from tests.support.messaging_tables import Outbox, sqlite_session_factory


def _factory(tmp_path, n: int):
    """A SQLite outbox holding `n` recorded events."""
    factory, _engine = sqlite_session_factory(tmp_path / "outbox.db")
    with UnitOfWork(factory, Outbox, source="/services/test") as uow:
        for _ in range(n):
            uow.add_event("crm.lead.created", {"lead_id": uuid.uuid4(), "email": "a@example.com", "score": 1})
        uow.commit()
    return factory


def _store(tmp_path, n: int, **kw) -> OutboxStore:
    return OutboxStore(_factory(tmp_path, n), Outbox, **kw)


def test_a_claim_takes_at_most_its_limit_oldest_first_and_not_twice(tmp_path):
    store = _store(tmp_path, 5)
    first = store.claim(2)
    assert [m.seq for m in first] == [1, 2]
    assert [m.seq for m in store.claim(10)] == [3, 4, 5]  # the leased rows are not claimed again
    assert store.claim(10) == []


def test_marked_rows_are_done_and_released_rows_are_claimed_again(tmp_path):
    store = _store(tmp_path, 4)
    claimed = [m.seq for m in store.claim(10)]
    store.mark_published(claimed[:2])
    store.release([claimed[2]])
    assert store.unpublished_count() == 2
    assert [m.seq for m in store.claim(10)] == [claimed[2]]
    store.release()  # all of this store's leases
    assert [m.seq for m in store.claim(10)] == claimed[2:]


def test_an_expired_lease_is_claimed_by_another_store(tmp_path):
    factory = _factory(tmp_path, 2)
    crashed = OutboxStore(factory, Outbox, lease_seconds=-1)  # every lease it takes has already run out
    alive = OutboxStore(factory, Outbox)
    assert len(crashed.claim(10)) == 2
    assert [m.seq for m in alive.claim(10)] == [1, 2]
    assert crashed.claim(10) == []  # now leased by the live store, for its full lease
