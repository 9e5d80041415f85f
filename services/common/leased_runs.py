"""Work held under a lease: claim a row (`FOR UPDATE SKIP LOCKED`, an owner and `lease_until`), check it is still
held before each write, give it up, or end it as failed (termination runs, analytics refreshes, contact imports).

A runner that dies holds nothing: its lease expires and the next claim takes the row over, so a row is never
stuck with a dead owner. Every write of a live runner first locks the row and checks the owner (`lock`), so a
runner whose lease expired and was taken over writes nothing (LeaseLost) instead of running alongside the new
owner. The rows' `status` column uses the words of PENDING, RUNNING and FAILED.
"""
from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select, update

from services.common.db import utcnow
from services.common.runtime import Runtime

PENDING, RUNNING, FAILED = "pending", "running", "failed"


class LeaseLost(Exception):
    """Another runner holds the row now (this one's lease expired), or it ended; stop without writing."""


class LeasedRunner:
    """Claims, locks, releases and fails rows of `model` for one owner; a runner of some work subclasses it.

    `model` is a mapped class with `seq` (the claim order), `id`, `status`, `lease_owner`, `lease_until`,
    `started_at`, `error` and `finished_at`. Subclasses name it (`model`), what a row is for messages (`noun`),
    the statuses in which the owner holds a row (`holding`), and may narrow what is claimable (`claimable`) and
    add to what failing does (`_on_fail`).
    """

    model: type  # set by the subclass (a class attribute, or in __init__ when it depends on the instance)
    noun = "row"
    holding: tuple[str, ...] = (RUNNING,)

    def __init__(self, runtime: Runtime, *, lease_seconds: float, owner: str | None = None):
        self.runtime = runtime
        self.lease = timedelta(seconds=lease_seconds)
        self.owner = owner or uuid.uuid4().hex

    def claimable(self, now: datetime):
        """The rows a claim may take at `now`: pending, or running under an expired lease (its owner died)."""
        m = self.model
        return or_(m.status == PENDING,
                   and_(m.status == RUNNING, or_(m.lease_until.is_(None), m.lease_until < now)))

    def claim(self) -> uuid.UUID | None:
        """Lease the oldest row that may go (see `claimable`); its id, or None."""
        return self._claim_first()

    def _claim_first(self, *where, values: Mapping | None = None) -> uuid.UUID | None:
        """Lease the oldest claimable row that also matches `where`, setting `values` besides the lease; its id."""
        m, now = self.model, utcnow()
        with self.runtime.session_factory() as session, session.begin():
            # Locked first, then updated by its key: an UPDATE ... WHERE seq IN (... LIMIT 1 SKIP LOCKED) may run
            # its subquery again for each row it scans, and so claim more than one row. (The outbox claims many
            # rows at once in one statement, with a CTE instead: outbox.OutboxStore.)
            seq = session.scalar(select(m.seq).where(self.claimable(now), *where).order_by(m.seq).limit(1)
                                 .with_for_update(of=m, skip_locked=True))
            if seq is None:
                return None
            return session.scalar(
                update(m).where(m.seq == seq)
                .values(status=RUNNING, lease_owner=self.owner, lease_until=now + self.lease,
                        started_at=func.coalesce(m.started_at, now), **(values or {}))
                .returning(m.id).execution_options(synchronize_session=False))

    def lock(self, session, row_id: uuid.UUID):
        """The row, locked in `session`'s transaction (FOR UPDATE, read afresh); LeaseLost unless still held."""
        m = self.model
        held = session.scalar(select(m).where(m.id == row_id).with_for_update()
                              .execution_options(populate_existing=True))
        if held is None or held.lease_owner != self.owner or held.status not in self.holding:
            raise LeaseLost(f"{self.noun} {row_id} is no longer held by this runner")
        return held

    def release(self, row_id: uuid.UUID) -> None:
        """Give up this runner's lease so any runner may claim the row at once (nothing when it is not held)."""
        m = self.model
        with self.runtime.session_factory() as session, session.begin():
            session.execute(update(m).where(m.id == row_id, m.lease_owner == self.owner)
                            .values(lease_owner=None, lease_until=None).execution_options(synchronize_session=False))

    def fail(self, row_id: uuid.UUID, reason: str, **details):
        """End a row this runner holds as failed, with the reason (LeaseLost when it does not); returns it.

        `details` go to `_on_fail`, which runs in the same transaction.
        """
        with self.runtime.uow() as uow:
            held = self.lock(uow.session, row_id)
            held.status, held.error, held.finished_at = FAILED, reason[:500], utcnow()
            held.lease_owner = held.lease_until = None
            self._on_fail(uow.session, held, **details)
            uow.commit()
            return held

    def _on_fail(self, session, held, **details) -> None:
        """What failing a row does besides its status (delete partial rows, drop a file); nothing by default."""
