"""Merged contacts in the loyalty service: memberships follow the person to the survivor (crm.contact.merged).

A membership of the merged contact in a program the survivor is not in becomes the survivor's. Where both are
members of one program, the merged membership's ledger entries and purchases move to the survivor's, so its
balance, lifetime points and purchase totals are the two added up exactly; the merged membership is closed
(`merged_into_id`) and a write to it is refused naming the membership it went into (service._member).
When any of the merged people was terminated, the survivor's memberships end up frozen (freezes.follow_merge).
"""
from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from sqlalchemy import func, select, update

from services.common.uow import UnitOfWork

from . import freezes
from .models import LedgerEntry, Member, Purchase

_NO_SYNC = {"synchronize_session": False}


def merge_memberships(uow: UnitOfWork, merges: Sequence[Mapping], *,
                      causes: Sequence[Mapping] | None = None) -> dict[str, int]:
    """Apply some crm.contact.merged payloads, in order; returns what changed, for the batch.

    `repointed`: memberships that became the survivor's; `combined`: memberships closed into the survivor's,
    with the `ledger_entries` and `purchases` they moved; `frozen`: the survivor's memberships a terminated
    person's freeze reached, each announced with crm.member.frozen (`causes[i]`, add_event keywords, being the
    cause of merges[i]). Running a payload again changes nothing (redelivery): the merged contact has no open
    membership left.
    """
    counts = dict.fromkeys(("repointed", "combined", "ledger_entries", "purchases", "frozen"), 0)
    with uow:
        # Every person of the batch at once, before any row lock: a freeze or an enrolment of one of them waits for
        # the merge (or it for them), so a freeze the merge carries to the survivor is announced exactly once.
        freezes.lock_contacts(uow.session, [contact_id for merge in merges
                                            for contact_id in (merge["survivor_id"], *_merged_ids(merge))])
        for index, merge in enumerate(merges):
            merged_ids = _merged_ids(merge)
            moved_from = _merge(uow.session, merge["survivor_id"], merged_ids, counts)
            counts["frozen"] += freezes.follow_merge(uow, merge["survivor_id"], merged_ids, moved_from,
                                                     **(causes[index] if causes else {}))
        uow.commit()
    return counts


def _merged_ids(merge: Mapping) -> list[uuid.UUID]:
    return [merge["merged_id"], *merge.get("previously_merged_ids", ())]


def _merge(session, survivor_id: uuid.UUID, merged_ids: list[uuid.UUID],
           counts: dict[str, int]) -> dict[uuid.UUID, uuid.UUID]:
    """Move the merged people's open memberships to the survivor; the repointed ones, with their former contact."""
    # Locked in id order: a purchase or redemption of one of these members waits and then sees the combined
    # ledger; two workers merging overlapping people queue instead of deadlocking.
    stmt = (select(Member).where(Member.contact_id.in_([survivor_id, *merged_ids]), Member.merged_into_id.is_(None))
            .order_by(Member.id).with_for_update().execution_options(populate_existing=True))
    by_program: dict[uuid.UUID, list[Member]] = {}
    moved_from: dict[uuid.UUID, uuid.UUID] = {}
    for member in session.scalars(stmt):
        by_program.setdefault(member.program_id, []).append(member)
    for members in by_program.values():
        keeper = next((member for member in members if member.contact_id == survivor_id), None)
        others = [member for member in members if member is not keeper]
        if not others:
            continue
        if keeper is None:
            # The survivor is not in this program: the oldest of the merged memberships carries on as its.
            keeper = min(others, key=lambda member: (member.enrolled_at, member.seq))
            others.remove(keeper)
            moved_from[keeper.id] = keeper.contact_id
            keeper.contact_id = survivor_id
            counts["repointed"] += 1
        if others:
            _combine(session, keeper, others, counts)
    return moved_from


def _combine(session, keeper: Member, others: list[Member], counts: dict[str, int]) -> None:
    """Move the ledgers and purchases of `others` to `keeper` and close them."""
    other_ids = [member.id for member in others]
    counts["ledger_entries"] += session.execute(update(LedgerEntry).where(LedgerEntry.member_id.in_(other_ids))
                                                .values(member_id=keeper.id).execution_options(**_NO_SYNC)).rowcount
    counts["purchases"] += session.execute(update(Purchase).where(Purchase.member_id.in_(other_ids))
                                           .values(member_id=keeper.id).execution_options(**_NO_SYNC)).rowcount
    # Memberships closed into one of them before now point at the keeper: one step to the open one.
    session.execute(update(Member).where(Member.merged_into_id.in_(other_ids)).values(merged_into_id=keeper.id)
                    .execution_options(**_NO_SYNC))
    for other in others:
        other.merged_into_id = keeper.id
        keeper.enrolled_at = min(keeper.enrolled_at, other.enrolled_at)
        keeper.tier = keeper.tier or other.tier
    counts["combined"] += len(others)
    session.flush()
    # Each entry's balance_after becomes the running balance of the combined ledger, in the order written.
    running = (select(LedgerEntry.id, func.sum(LedgerEntry.points).over(order_by=LedgerEntry.seq).label("balance"))
               .where(LedgerEntry.member_id == keeper.id).subquery())
    session.execute(update(LedgerEntry).where(LedgerEntry.id == running.c.id)
                    .values(balance_after=running.c.balance).execution_options(**_NO_SYNC))
