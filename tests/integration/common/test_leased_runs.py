"""The kit's leased runner on the real PostgreSQL (and the SQLite of `crm run`): a claim takes the oldest free row,
a dead owner's expired lease is taken over, the old owner then writes nothing, release and fail end a lease."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import String, insert, select, update
from sqlalchemy.orm import Mapped, mapped_column

from services.common.db import SeqType, make_base, make_engine, make_session_factory, messaging_models, utcnow
from services.common.leased_runs import FAILED, PENDING, RUNNING, LeasedRunner, LeaseLost
from services.common.runtime import Runtime
from services.common.settings import Settings

pytestmark = pytest.mark.integration

Base = make_base()
Outbox, Inbox = messaging_models(Base)


class Work(Base):
    __tablename__ = "leased_work"
    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    status: Mapped[str] = mapped_column(String(10), default=PENDING)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(String(500))
    note: Mapped[str | None] = mapped_column(String(50))


class WorkRunner(LeasedRunner):
    model, noun = Work, "work"

    def _on_fail(self, session, held, *, note: str | None = None) -> None:
        held.note = note


def _runtime(url: str) -> Runtime:
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    return Runtime(settings=Settings(service="contacts", database_url=url), engine=engine,
                   session_factory=make_session_factory(engine), outbox_model=Outbox, inbox_model=Inbox)


@pytest.fixture(params=["postgresql", "sqlite"])
def runtime(request, make_database, tmp_path):
    url = make_database("leased_runs") if request.param == "postgresql" else f"sqlite:///{tmp_path / 'leased.db'}"
    built = _runtime(url)
    yield built
    built.engine.dispose()


@pytest.fixture
def pg_runtime(make_database):
    built = _runtime(make_database("leased_runs"))
    yield built
    built.engine.dispose()


def _add(runtime, count: int = 1, **values) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(count)]
    with runtime.session_factory() as session, session.begin():
        session.execute(insert(Work), [{"id": i, "status": PENDING, **values} for i in ids])
    return ids


def _get(runtime, work_id) -> Work:
    with runtime.session_factory() as session:
        return session.scalar(select(Work).where(Work.id == work_id))


def _expire(runtime, work_id) -> None:
    """What a dead owner leaves behind: its row running, the lease past."""
    with runtime.session_factory() as session, session.begin():
        session.execute(update(Work).where(Work.id == work_id).values(lease_until=utcnow() - timedelta(seconds=1)))


def test_claims_take_the_oldest_pending_rows_one_each_and_lease_them(runtime):
    first, second = _add(runtime, 2)
    a, b = WorkRunner(runtime, lease_seconds=60), WorkRunner(runtime, lease_seconds=60)

    assert a.claim() == first
    assert b.claim() == second
    assert a.claim() is None  # both held under a live lease
    claimed = _get(runtime, first)
    assert (claimed.status, claimed.lease_owner) == (RUNNING, a.owner)
    assert claimed.lease_until > utcnow() + timedelta(seconds=30) and claimed.started_at is not None


def test_an_expired_lease_is_taken_over_and_the_dead_owner_writes_nothing(runtime):
    [work] = _add(runtime)
    dead, successor = WorkRunner(runtime, lease_seconds=60), WorkRunner(runtime, lease_seconds=60)
    assert dead.claim() == work
    started = _get(runtime, work).started_at
    assert successor.claim() is None

    _expire(runtime, work)

    assert successor.claim() == work
    taken = _get(runtime, work)
    assert (taken.status, taken.lease_owner, taken.started_at) == (RUNNING, successor.owner, started)
    with runtime.session_factory() as session, session.begin(), pytest.raises(LeaseLost):
        dead.lock(session, work)
    with pytest.raises(LeaseLost):
        dead.fail(work, "too late")
    dead.release(work)  # not its own any more: nothing changes
    assert _get(runtime, work).lease_owner == successor.owner
    with runtime.session_factory() as session, session.begin():
        assert successor.lock(session, work).id == work


def test_a_released_row_is_claimed_again_at_once(runtime):
    [work] = _add(runtime)
    first, second = WorkRunner(runtime, lease_seconds=60), WorkRunner(runtime, lease_seconds=60)
    assert first.claim() == work

    first.release(work)

    assert (_get(runtime, work).status, _get(runtime, work).lease_owner) == (RUNNING, None)
    assert second.claim() == work
    with runtime.session_factory() as session, session.begin(), pytest.raises(LeaseLost):
        first.lock(session, work)


def test_failing_ends_the_row_with_its_reason_and_runs_the_subclass_step(runtime):
    [work] = _add(runtime)
    runner = WorkRunner(runtime, lease_seconds=60)
    assert runner.claim() == work

    failed = runner.fail(work, "x" * 600, note="partial rows deleted")

    stored = _get(runtime, work)
    assert (stored.status, stored.error, stored.note) == (FAILED, "x" * 500, "partial rows deleted")
    assert (stored.lease_owner, stored.lease_until) == (None, None) and stored.finished_at is not None
    assert failed.id == work
    assert runner.claim() is None  # a failed row is never claimed again
    with pytest.raises(LeaseLost):
        runner.fail(work, "twice")


def test_a_claim_may_name_its_row_and_set_more_columns(runtime):
    older, wanted = _add(runtime, 2)
    runner = WorkRunner(runtime, lease_seconds=60)

    assert runner._claim_first(Work.id == wanted, values={"note": "claimed by id"}) == wanted

    assert _get(runtime, wanted).note == "claimed by id"
    assert _get(runtime, older).status == PENDING


def test_a_claim_skips_a_row_another_transaction_has_locked(pg_runtime):  # SQLite has no row locks
    runtime = pg_runtime
    locked, free = _add(runtime, 2)
    runner = WorkRunner(runtime, lease_seconds=60)
    with runtime.session_factory() as other, other.begin():
        other.scalar(select(Work).where(Work.id == locked).with_for_update())  # a runner mid-step holds it

        assert runner.claim() == free  # not blocked behind the lock, not the same row twice
        assert runner.claim() is None
    assert runner.claim() == locked
