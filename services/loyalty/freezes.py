"""Terminated customers in the loyalty service: their memberships are frozen (crm.contact.terminated).

A frozen membership keeps its balance and history and still records purchases (the facts matter to the
other services), but a purchase earns nothing and a redemption is refused (service.py). Loyalty keeps the
terminated contact itself too (`frozen_contacts`): a membership that contact gets later, in any program, is
created frozen, and a merge carries the freeze to the survivor: the merged people were one person all along.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, TEXT
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from services.common.problems import Conflict
from services.common.uow import UnitOfWork

from .models import FrozenContact, Member

_NO_SYNC = {"synchronize_session": False}
_INSERTS = {"postgresql": pg_insert, "sqlite": sqlite_insert}
# Transaction-scoped advisory locks per contact, taken in the order given (callers sort, so none deadlock).
_LOCK_CONTACTS = text("SELECT pg_advisory_xact_lock(hashtextextended(c, 0)) "
                      "FROM unnest(:ids) WITH ORDINALITY AS t(c, n) ORDER BY n"
                      ).bindparams(bindparam("ids", type_=ARRAY(TEXT)))


def lock_contacts(session, contact_ids: Iterable[uuid.UUID]) -> None:
    """Serialise a new membership of these contacts with their freeze (PostgreSQL; SQLite has one writer anyway).

    Without it an enrolment could miss a termination committing meanwhile, and the freeze miss the new,
    not yet committed membership: an active membership of a terminated contact.
    """
    ids = sorted({str(contact_id) for contact_id in contact_ids})
    if ids and session.get_bind().dialect.name == "postgresql":
        session.execute(_LOCK_CONTACTS, {"ids": ids})


def freeze_contacts(uow: UnitOfWork, terminations: Sequence[Mapping]) -> dict[str, int]:
    """Freeze every membership of the contacts of some crm.contact.terminated payloads; what changed, for the batch.

    `contacts`: contacts newly recorded as terminated; `members`: memberships newly frozen. The first
    termination of a contact counts: a second one (another decision, or a payload delivered again under a
    new event id) changes nothing. Payloads without a contact id (a partner's termination) are skipped.
    """
    with uow:
        session = uow.session
        first: dict[uuid.UUID, Mapping] = {}
        for data in terminations:
            if data.get("contact_id") is not None:
                first.setdefault(data["contact_id"], data)
        if not first:
            return {"contacts": 0, "members": 0}
        lock_contacts(session, first)
        rows = [{"contact_id": contact_id, "frozen_at": data["occurred_at"], "reason": data.get("reason"),
                 "recommendation_id": data.get("recommendation_id"), "decision_id": data.get("decision_id")}
                for contact_id, data in sorted(first.items(), key=lambda item: str(item[0]))]
        added = _record(session, rows)
        members = _freeze_memberships(session, list(first))
        uow.commit()
        return {"contacts": added, "members": members}


def _record(session, rows: list[dict]) -> int:
    """Insert the contacts not recorded yet (one statement); how many were new."""
    insert = _INSERTS[session.get_bind().dialect.name]
    stmt = insert(FrozenContact).on_conflict_do_nothing(index_elements=["contact_id"])
    return len(session.execute(stmt.returning(FrozenContact.contact_id), rows).all())


def _freeze_memberships(session, contact_ids: Iterable[uuid.UUID]) -> int:
    """Freeze the contacts' unfrozen memberships as their contact record says (one statement); how many."""
    record = select(FrozenContact).where(FrozenContact.contact_id == Member.contact_id)
    stmt = (update(Member)
            .where(Member.contact_id.in_(list(contact_ids)), Member.frozen_at.is_(None))
            .values(frozen_at=record.with_only_columns(FrozenContact.frozen_at).scalar_subquery(),
                    frozen_reason=record.with_only_columns(FrozenContact.reason).scalar_subquery())
            .execution_options(**_NO_SYNC))
    return session.execute(stmt).rowcount


def frozen_contact(session, contact_id: uuid.UUID) -> FrozenContact | None:
    """The contact's termination as loyalty recorded it, or None; for a new membership (locks the contact)."""
    lock_contacts(session, [contact_id])
    return session.scalar(select(FrozenContact).where(FrozenContact.contact_id == contact_id))


def frozen_contacts(session, contact_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, FrozenContact]:
    """The terminations of these contacts, by contact id, in one round trip (no lock: see lock_contacts)."""
    wanted = set(contact_ids)
    if not wanted:
        return {}
    return {row.contact_id: row for row in session.scalars(select(FrozenContact)
                                                           .where(FrozenContact.contact_id.in_(wanted)))}


def freeze_as(member: Member, frozen: FrozenContact | None) -> Member:
    """A new membership of a terminated contact is created frozen, like the contact's others."""
    if frozen is not None:
        member.frozen_at, member.frozen_reason = frozen.frozen_at, frozen.reason
    return member


def frozen_fields(frozen: FrozenContact | None) -> dict:
    """The frozen columns of a membership row inserted in bulk for a contact (None: an active one)."""
    return {"frozen_at": frozen.frozen_at if frozen else None, "frozen_reason": frozen.reason if frozen else None}


def refuse_when_frozen(member: Member, what: str) -> None:
    """409 (`membership-frozen`) naming the membership when it is frozen: its points can no longer be `what`."""
    if member.frozen_at is None:
        return
    raise Conflict(f"Member {member.id} is frozen since {member.frozen_at.isoformat()} (its contact was "
                   f"terminated); its points cannot be {what}.", slug="membership-frozen", title="Membership frozen",
                   member_id=str(member.id), frozen_at=member.frozen_at.isoformat())


def follow_merge(session, survivor_id: uuid.UUID, merged_ids: Sequence[uuid.UUID]) -> int:
    """After a merge: when any of the people was terminated, the survivor is too, with the earliest termination.

    Returns how many of the survivor's memberships this froze. A survivor terminated itself keeps its own record.
    """
    records = frozen_contacts(session, [survivor_id, *merged_ids])
    if not records:
        return 0
    if survivor_id not in records:
        earliest = min(records.values(), key=lambda row: row.frozen_at)
        _record(session, [{"contact_id": survivor_id, "frozen_at": earliest.frozen_at, "reason": earliest.reason,
                           "recommendation_id": earliest.recommendation_id, "decision_id": earliest.decision_id}])
    return _freeze_memberships(session, [survivor_id])

