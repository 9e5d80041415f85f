"""Terminated customers in the loyalty service: their memberships are frozen (crm.contact.terminated).

A frozen membership keeps its balance and history and still records purchases (the facts matter to the
other services), but a purchase earns nothing and a redemption is refused (service.py). Loyalty keeps the
terminated contact (`frozen_contacts`), and that record is the only place the freeze is stored: a membership is
frozen while its contact has one (`Member.frozen_at`/`frozen_reason` read it in the statement that loads the
member). So a membership the contact gets later, in any program, is frozen from the start, and a merge carries the
freeze to the survivor by recording the survivor too: the merged people were one person all along.

Each membership that becomes frozen is announced once with crm.member.frozen, by whichever of the freeze, the
enrolment or the merge made it so.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import bindparam, select, text
from sqlalchemy.dialects.postgresql import ARRAY, TEXT
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm.attributes import set_committed_value

from services.common.problems import Conflict
from services.common.uow import UnitOfWork

from .models import FrozenContact, Member

_INSERTS = {"postgresql": pg_insert, "sqlite": sqlite_insert}
# Transaction-scoped advisory locks per contact, taken in the order given (callers sort, so none deadlock).
_LOCK_CONTACTS = text("SELECT pg_advisory_xact_lock(hashtextextended(c, 0)) "
                      "FROM unnest(:ids) WITH ORDINALITY AS t(c, n) ORDER BY n"
                      ).bindparams(bindparam("ids", type_=ARRAY(TEXT)))


def lock_contacts(session, contact_ids: Iterable[uuid.UUID]) -> None:
    """Serialise a new membership of these contacts with their freeze (PostgreSQL; SQLite has one writer anyway).

    The frozen state itself needs no lock (it is read from `frozen_contacts`), but its announcement does: without
    it an enrolment could miss a termination committing meanwhile, and the freeze miss the new, not yet committed
    membership, so neither would publish crm.member.frozen for a membership that is frozen.
    """
    ids = sorted({str(contact_id) for contact_id in contact_ids})
    if ids and session.get_bind().dialect.name == "postgresql":
        session.execute(_LOCK_CONTACTS, {"ids": ids})


def freeze_contacts(uow: UnitOfWork, terminations: Sequence[Mapping], *,
                    causes: Sequence[Mapping] | None = None) -> dict[str, int]:
    """Freeze every membership of the contacts of some crm.contact.terminated payloads; what changed, for the batch.

    `contacts`: contacts newly recorded as terminated; `members`: memberships newly frozen, each announced with
    crm.member.frozen (`causes[i]`, add_event keywords, being the cause of terminations[i]). The first termination
    of a contact counts: a second one (another decision, or a payload delivered again under a new event id)
    changes nothing and publishes nothing. Payloads without a contact id (a partner's termination) are skipped.
    """
    with uow:
        session = uow.session
        first: dict[uuid.UUID, tuple[Mapping, Mapping]] = {}
        for index, data in enumerate(terminations):
            if data.get("contact_id") is not None:
                first.setdefault(data["contact_id"], (data, causes[index] if causes else {}))
        if not first:
            return {"contacts": 0, "members": 0}
        lock_contacts(session, first)
        rows = [{"contact_id": contact_id, "frozen_at": data["occurred_at"], "reason": data.get("reason"),
                 "recommendation_id": data.get("recommendation_id"), "decision_id": data.get("decision_id")}
                for contact_id, (data, _cause) in sorted(first.items(), key=lambda item: str(item[0]))]
        added = _record(session, rows)
        members = 0
        if added:
            stmt = (select(Member.id, Member.contact_id, Member.program_id)
                    .where(Member.contact_id.in_(added)).order_by(Member.seq))
            for member_id, contact_id, program_id in session.execute(stmt):
                announce(uow, member_id, contact_id, program_id, added[contact_id], **first[contact_id][1])
                members += 1
        uow.commit()
        return {"contacts": len(added), "members": members}


def _record(session, rows: list[dict]) -> dict[uuid.UUID, dict]:
    """Insert the contacts not recorded yet (one statement); the new ones' rows by contact id."""
    insert = _INSERTS[session.get_bind().dialect.name]
    stmt = insert(FrozenContact).on_conflict_do_nothing(index_elements=["contact_id"])
    added = set(session.execute(stmt.returning(FrozenContact.contact_id), rows).scalars())
    return {row["contact_id"]: row for row in rows if row["contact_id"] in added}


def announce(uow: UnitOfWork, member_id: uuid.UUID, contact_id: uuid.UUID, program_id: uuid.UUID,
             record: Mapping | FrozenContact, **cause) -> None:
    """Publish crm.member.frozen for a membership that became frozen in this transaction, as `record` says."""
    frozen_at, reason = ((record["frozen_at"], record["reason"]) if isinstance(record, Mapping)
                         else (record.frozen_at, record.reason))
    uow.add_event("crm.member.frozen", {"member_id": member_id, "contact_id": contact_id, "program_id": program_id,
                                        "frozen_at": frozen_at, "reason": reason}, subject=member_id, **cause)


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


def loaded_as(member: Member, frozen: FrozenContact | None) -> Member:
    """Give a membership just inserted its frozen state from its contact's record, read under the contact's lock.

    The state is not a column: the ORM would otherwise read it back with one query per membership.
    """
    set_committed_value(member, "frozen_at", frozen.frozen_at if frozen else None)
    set_committed_value(member, "frozen_reason", frozen.reason if frozen else None)
    return member


def refuse_when_frozen(member: Member, what: str) -> None:
    """409 (`membership-frozen`) naming the membership when it is frozen: its points can no longer be `what`."""
    if member.frozen_at is None:
        return
    raise Conflict(f"Member {member.id} is frozen since {member.frozen_at.isoformat()} (its contact was "
                   f"terminated); its points cannot be {what}.", slug="membership-frozen", title="Membership frozen",
                   member_id=str(member.id), frozen_at=member.frozen_at.isoformat())


def follow_merge(uow: UnitOfWork, survivor_id: uuid.UUID, merged_ids: Sequence[uuid.UUID],
                 moved_from: Mapping[uuid.UUID, uuid.UUID], **cause) -> int:
    """After a merge: when any of the people was terminated, the survivor is too, with the earliest termination.

    `moved_from`: the memberships this merge moved to the survivor, with the contact each had before. Returns how
    many of the survivor's memberships became frozen (each announced); one moved from a terminated person was frozen
    already. A survivor terminated itself keeps its own record. The caller holds the people's locks.
    """
    session = uow.session
    records = frozen_contacts(session, [survivor_id, *merged_ids])
    if not records:
        return 0
    record = records.get(survivor_id)
    if record is None:
        earliest = min(records.values(), key=lambda row: row.frozen_at)
        record = {"contact_id": survivor_id, "frozen_at": earliest.frozen_at, "reason": earliest.reason,
                  "recommendation_id": earliest.recommendation_id, "decision_id": earliest.decision_id}
        _record(session, [record])
    frozen = 0
    stmt = select(Member.id, Member.program_id).where(Member.contact_id == survivor_id).order_by(Member.seq)
    for member_id, program_id in session.execute(stmt):
        if moved_from.get(member_id, survivor_id) not in records:
            announce(uow, member_id, survivor_id, program_id, record, **cause)
            frozen += 1
    return frozen
