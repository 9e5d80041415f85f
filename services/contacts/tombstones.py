"""What a contact id that is not (or no longer) there answers: 404, or for a merged or erased id, who took over.

The lookups run only on the not-found path, so a contact that exists costs nothing extra.
"""
from __future__ import annotations

import uuid

from sqlalchemy import bindparam, literal, select
from sqlalchemy.orm import Session

from services.common.problems import Moved, NotFound, Problem

from .models import Contact, ContactMerge, Erasure

# -- merged ids (merges.py) -----------------------------------------------------------------------------------

# The end of a merged id's chain (A merged into B, B later into C: C) in one round trip. A merge needs both rows,
# so a merged id never survives a later merge and the chain cannot loop; the depth bound is a guard all the same.
_MERGES = ContactMerge.__table__
_FIRST = (select(_MERGES.c.survivor_id.label("id"), literal(1).label("depth"))
          .where(_MERGES.c.merged_id == bindparam("contact_id")).cte("chain", recursive=True))
_CHAIN = _FIRST.union_all(select(_MERGES.c.survivor_id, _FIRST.c.depth + 1)
                          .join(_FIRST, _MERGES.c.merged_id == _FIRST.c.id).where(_FIRST.c.depth < 100))
_SURVIVOR = select(_CHAIN.c.id).order_by(_CHAIN.c.depth.desc()).limit(1)


def survivor_of(session: Session, contact_id: uuid.UUID) -> uuid.UUID | None:
    """The contact a merged id lives on as today (following later merges), or None when it was never merged."""
    return session.scalar(_SURVIVOR, {"contact_id": contact_id})


def survivors(session: Session, contact_ids) -> dict[uuid.UUID, uuid.UUID]:
    """For each of these ids that was merged, the contact it lives on as today; {} when none was (one query).

    Events name the contact their service knew: one published before that service handled the merge still
    names the merged id, and what it adds must land on the survivor. A chain costs one query per link.
    """
    result: dict[uuid.UUID, uuid.UUID] = {}
    heads = {contact_id: contact_id for contact_id in contact_ids if contact_id is not None}
    for _ in range(100):
        if not heads:
            break
        moved = dict(session.execute(select(_MERGES.c.merged_id, _MERGES.c.survivor_id)
                                     .where(_MERGES.c.merged_id.in_(set(heads.values())))).all())
        heads = {original: moved[head] for original, head in heads.items() if head in moved}
        result.update(heads)
    return result


def merged_contact(contact_id: uuid.UUID, survivor_id: uuid.UUID) -> Moved:
    """A read of a merged id is sent on to its survivor (301); a write is refused naming it (410)."""
    # Only a caller that may read contacts learns which contact the person lives on as.
    return Moved(f"Contact {contact_id} was merged into contact {survivor_id}.", old_id=contact_id,
                 new_id=survivor_id, survivor_id=str(survivor_id)
                 ).for_readers("contacts:read", otherwise=f"Contact {contact_id} was merged into another contact.")


# -- erased ids (erasure.py) ----------------------------------------------------------------------------------

def erased_contact(contact_id: uuid.UUID, erasure_id: uuid.UUID) -> Problem:
    """An erased id answers 410 naming its erasure (which holds no personal data)."""
    return Problem(f"Contact {contact_id} was erased (erasure {erasure_id}).", status=410, slug="gone", title="Gone",
                   erasure_id=str(erasure_id), erasure=f"/api/v1/contacts/erasures/{erasure_id}")


def missing_contact(session: Session, contact_id: uuid.UUID) -> Exception:
    """The error for a contact id with no row: merged (merges.py), erased (erasure.py), or never there."""
    survivor_id = survivor_of(session, contact_id)
    if survivor_id is not None:
        return merged_contact(contact_id, survivor_id)
    erasure_id = session.scalar(select(Erasure.id).where(Erasure.contact_id == contact_id))
    if erasure_id is not None:
        return erased_contact(contact_id, erasure_id)
    return NotFound(f"No contact with id {contact_id}.")


def contact_row(session: Session, model, contact_id: uuid.UUID, row_id: uuid.UUID, *, what: str, lock: bool = False):
    """One row of a contact's own table (`model` with `id` and `contact_id`: interactions, payments, fraud flags),
    locked FOR UPDATE with `lock`; the 404/301/410 for the contact, or a 404 naming `what` it has no such row."""
    stmt = select(model).where(model.id == row_id, model.contact_id == contact_id)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    row = session.scalar(stmt)
    if row is None:  # only on the not-found path: which of the two ids is unknown
        if session.scalar(select(Contact.seq).where(Contact.id == contact_id)) is None:
            raise missing_contact(session, contact_id)
        raise NotFound(f"Contact {contact_id} has no {what} {row_id}.")
    return row


def hold_contact(session: Session, contact_id: uuid.UUID) -> None:
    """404 (or 301/410) unless the contact exists; its row stays KEY SHARE locked, so a merge or erasure waits for
    the caller's write to one of the contact's own tables."""
    stmt = select(Contact.seq).where(Contact.id == contact_id).with_for_update(read=True, key_share=True)
    if session.scalar(stmt) is None:
        raise missing_contact(session, contact_id)
