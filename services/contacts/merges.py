"""Merging two contacts that are one person: the survivor takes over the merged contact's record and history.

In one transaction the survivor's fields are completed from the merged contact (merged_fields), its purchase
metrics are added up, every row that named the merged contact is moved to the survivor, the merged row is
deleted and its id kept as a tombstone (`contact_merges`): reads of it are sent on to the survivor, writes are
refused naming it (tombstones.py). The other services re-point their references on `crm.contact.merged`.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Table, delete, func, select, update

from services.common.db import utcnow
from services.common.problems import Unprocessable
from services.common.termination.models import OPEN as OPEN_RECOMMENDATION
from services.common.termination.models import WITHDRAWN as WITHDRAWN_RECOMMENDATION
from services.common.uow import UnitOfWork

from .consent import supersedes
from .models import (
    PROFILE_FIELDS,
    Base,
    Contact,
    ContactMerge,
    ContactPayment,
    ContactStage,
    ContactPurchaseMetric,
    ContactPurchaseSummary,
    CustomerAnalytics,
    SegmentMember,
    Termination,
    TimelineEntry,
)
from .purchase_facts import TOTALS, Spend, locked_summary
from .tombstones import missing_contact

# How a merge treats every table with a `contact_id` column (or a `subject_id`, the termination kit's name for the
# contact). tests/unit/contacts/test_merge_rules.py fails for a table in none of these, so a table added later is
# not silently left behind with the merged id.
MOVED = frozenset({  # one UPDATE each: afterwards the rows name the survivor
    "contact_purchases", "contact_returns", "timeline_entries", "contact_leads", "interactions", "consent_changes",
    "feedback", "contact_fraud_flags",
})
COMBINED = frozenset({"contact_purchase_summary", "contact_purchase_metrics",  # keyed by contact: added up
                      # the merged id's recorded segment memberships go; the next refresh finds the survivor
                      "segment_members",
                      # the merged id's analytics rows and stage go too, without events; the survivor's stay as
                      # they are until the next refresh computes them from both contacts' facts
                      "customer_analytics", "contact_stages",
                      # moved, except an invoice the survivor has too: the survivor's record of it stays
                      "contact_payments",
                      # moved, the merged id's open recommendation withdrawn first (_follow_termination)
                      "termination_recommendations", "termination_decisions"})
KEPT = frozenset({"erasures",  # an erasure record keeps naming the id it erased
                  "termination_run_subjects"})  # a run shows whom it flagged then, under the id it had

# Fields the survivor fills from the merged contact when its own are empty.
FILLED_FIELDS = PROFILE_FIELDS + ("account_id", "origin_lead_id")
# What the merged record shows, besides `purchases`.
RECORD_FIELDS = tuple(column.key for column in Contact.__table__.columns if column.key != "seq")


# -- pure rules -------------------------------------------------------------------------------------------

def merged_consents(survivor: Mapping, merged: Mapping) -> dict:
    """Per `channel:purpose`, the newer statement of the two (consent.supersedes: at equal times a withdrawal)."""
    result = dict(survivor)
    for key, state in merged.items():
        current = result.get(key)
        if current is None or supersedes({**state, "occurred_at": datetime.fromisoformat(state["occurred_at"])},
                                         current):
            result[key] = state
    return result


def merged_fields(survivor: Mapping, merged: Mapping) -> dict:
    """The survivor's fields that change when `merged` is merged into it, with their new values.

    The survivor's non-empty value wins; an empty one (profile fields, account, origin lead) is filled from the
    merged contact. Tags: the union. Attributes: the survivor's, plus the merged contact's it lacks. Consents:
    the newer statement per channel and purpose. Termination: a terminated person stays terminated, so the
    survivor takes the merged contact's `terminated` status and the earlier termination time (loyalty freezes
    the survivor's memberships on the same rule). The e-mail, id and creation time stay the survivor's.
    """
    changes = {name: merged[name] for name in FILLED_FIELDS if not survivor.get(name) and merged.get(name)}
    if merged.get("status") == "terminated":
        ended = [at for at in (survivor.get("terminated_at"), merged.get("terminated_at")) if at is not None]
        for name, value in (("status", "terminated"), ("terminated_at", min(ended) if ended else None)):
            if survivor.get(name) != value:
                changes[name] = value
    tags = sorted(set(survivor.get("tags") or ()) | set(merged.get("tags") or ()))
    attributes = {**(merged.get("attributes") or {}), **(survivor.get("attributes") or {})}
    consents = merged_consents(survivor.get("consents") or {}, merged.get("consents") or {})
    for name, value in (("tags", tags), ("attributes", attributes), ("consents", consents)):
        if value != (survivor.get(name) or type(value)()):
            changes[name] = value
    return changes


@dataclass
class PurchaseTotals:
    """One contact's purchase metrics: the summary and the total per currency."""

    count: int = 0
    first_purchase_at: datetime | None = None
    last_purchase_at: datetime | None = None
    spend: dict[str, Spend] = field(default_factory=dict)  # by currency

    def view(self) -> dict:
        """The `purchases` block of a contact (as purchase_facts.purchases_view shows it)."""
        return {"count": self.count, "first_purchase_at": self.first_purchase_at,
                "last_purchase_at": self.last_purchase_at,
                "total_spend": [spend.view() for _currency, spend in sorted(self.spend.items())]}


def combined_purchases(summaries: Iterable, metrics: Iterable) -> PurchaseTotals:
    """Both contacts' metrics added up exactly: counts and totals summed, the earliest first and latest last."""
    totals = PurchaseTotals()
    for summary in summaries:
        totals.count += summary.purchase_count
        for name, pick in (("first_purchase_at", min), ("last_purchase_at", max)):
            values = [v for v in (getattr(totals, name), getattr(summary, name)) if v is not None]
            setattr(totals, name, pick(values) if values else None)
    for metric in metrics:
        totals.spend.setdefault(metric.currency, Spend(metric.currency)).add(Spend.of(metric))
    return totals


# -- the tables ------------------------------------------------------------------------------------------

def moved_tables() -> list[Table]:
    """The tables whose rows move to the survivor, in dependency order."""
    return [table for table in Base.metadata.sorted_tables if table.name in MOVED]


def _counts(session, merged_id: uuid.UUID) -> dict[str, int]:
    """How many rows of each moved table name the merged contact, in one round trip."""
    tables = moved_tables()
    counts = session.execute(select(*(
        select(func.count()).select_from(table).where(table.c.contact_id == merged_id).scalar_subquery()
        .label(table.name) for table in tables))).one()
    return dict(counts._mapping)


def _repoint(session, survivor_id: uuid.UUID, merged_id: uuid.UUID) -> dict[str, int]:
    """Move every row of the moved tables from the merged contact to the survivor: one UPDATE per table."""
    return {table.name: session.execute(update(table).where(table.c.contact_id == merged_id)
                                        .values(contact_id=survivor_id)).rowcount
            for table in moved_tables()}


def _move_payments(session, survivor_id: uuid.UUID, merged_id: uuid.UUID, *, dry_run: bool = False) -> int:
    """Move (or with `dry_run` count) the merged contact's payments to the survivor; the rows moved.

    One invoice per contact: an invoice both have is one invoice recorded twice, and the survivor's row stays;
    the dropped row's timeline entry (keyed by its id) goes with it.
    """
    p = ContactPayment
    on_both = p.invoice_reference.in_(select(p.invoice_reference).where(p.contact_id == survivor_id))
    if dry_run:
        return session.scalar(select(func.count()).select_from(p).where(p.contact_id == merged_id, ~on_both))
    dropped = select(p.id).where(p.contact_id == merged_id, on_both)
    entries = TimelineEntry.__table__
    session.execute(delete(entries).where(entries.c.id.in_(dropped)))
    session.execute(delete(p).where(p.contact_id == merged_id, on_both))
    return session.execute(update(p).where(p.contact_id == merged_id).values(contact_id=survivor_id)).rowcount


def _drop_memberships(session, merged_id: uuid.UUID) -> int:
    """Delete the merged contact's recorded segment memberships (no events: the person stays where the survivor is).

    Moving them could clash with the survivor's own; the survivor keeps or gains each at the next refresh.
    """
    return session.execute(delete(SegmentMember).where(SegmentMember.contact_id == merged_id)).rowcount


def _drop_analytics(session, merged_id: uuid.UUID, *, dry_run: bool = False) -> dict[str, int]:
    """Delete (or with `dry_run` count) the merged contact's snapshot rows and current stage; the rows, by table."""
    found = {}
    for model in (CustomerAnalytics, ContactStage):
        if dry_run:
            found[model.__tablename__] = session.scalar(select(func.count()).select_from(model)
                                                        .where(model.contact_id == merged_id))
        else:
            found[model.__tablename__] = session.execute(delete(model).where(model.contact_id == merged_id)).rowcount
    return found


def _follow_termination(session, survivor_id: uuid.UUID, merged_id: uuid.UUID, *,
                        dry_run: bool = False) -> dict[str, int]:
    """The merged contact's termination records become the survivor's: its open recommendation is withdrawn (the
    survivor is judged on the merged record at the next evaluation; deciding on an id that no longer exists
    could not act), and its recommendations and decisions are re-pointed so the survivor's history holds them."""
    Rec, Decision = Termination.Recommendation, Termination.Decision
    records = (("termination_recommendations", Rec), ("termination_decisions", Decision))
    if dry_run:
        return {name: session.scalar(select(func.count()).select_from(model).where(model.subject_id == merged_id))
                for name, model in records}
    session.execute(update(Rec).where(Rec.subject_id == merged_id, Rec.status == OPEN_RECOMMENDATION)
                    .values(status=WITHDRAWN_RECOMMENDATION, closed_at=utcnow())
                    .execution_options(synchronize_session=False))
    moved = {}
    for name, model in records:
        moved[name] = session.execute(update(model).where(model.subject_id == merged_id)
                                      .values(subject_id=survivor_id)
                                      .execution_options(synchronize_session=False)).rowcount
    return moved


def _pair(session, survivor_id: uuid.UUID, merged_id: uuid.UUID, *, lock: bool) -> tuple[Contact, Contact]:
    """Both contacts; locked in id order, so two merges of the same pair (either way round) queue, never deadlock.

    The one that waited finds a row gone and answers as a merged id does: 410 naming the survivor.
    """
    stmt = select(Contact).where(Contact.id.in_((survivor_id, merged_id))).order_by(Contact.id)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    found = {contact.id: contact for contact in session.scalars(stmt)}
    for contact_id in (merged_id, survivor_id):
        if contact_id not in found:
            raise missing_contact(session, contact_id)
    return found[survivor_id], found[merged_id]


def _purchase_rows(session, ids: tuple[uuid.UUID, uuid.UUID], *, lock: bool) -> tuple[dict, list]:
    """Both contacts' purchase summaries (locked in id order, as a purchase being counted locks one) and metrics."""
    stmt = (select(ContactPurchaseSummary).where(ContactPurchaseSummary.contact_id.in_(ids))
            .order_by(ContactPurchaseSummary.contact_id).execution_options(populate_existing=True))
    if lock:
        stmt = stmt.with_for_update()
    summaries = {summary.contact_id: summary for summary in session.scalars(stmt)}
    # Read under the summary locks: no purchase of either contact changes these rows until we commit.
    metrics = list(session.scalars(select(ContactPurchaseMetric).where(ContactPurchaseMetric.contact_id.in_(ids))
                                   .execution_options(populate_existing=True)))
    return summaries, metrics


def _fold_purchases(session, survivor_id: uuid.UUID, merged_id: uuid.UUID, summaries: dict, metrics: list,
                    totals: PurchaseTotals) -> dict[str, int]:
    """Write `totals` as the survivor's metrics and delete the merged contact's rows; the rows folded, by table."""
    merged_summary = summaries.get(merged_id)
    merged_metrics = [metric for metric in metrics if metric.contact_id == merged_id]
    if merged_summary is None and not merged_metrics:
        return {"contact_purchase_summary": 0, "contact_purchase_metrics": 0}
    summary = summaries.get(survivor_id) or locked_summary(session, survivor_id)
    summary.purchase_count = totals.count
    summary.first_purchase_at, summary.last_purchase_at = totals.first_purchase_at, totals.last_purchase_at
    own = {metric.currency: metric for metric in metrics if metric.contact_id == survivor_id}
    for currency, spend in totals.spend.items():
        metric = own.get(currency)
        if metric is None:
            metric = ContactPurchaseMetric(contact_id=survivor_id, currency=currency)
            session.add(metric)
        for name in TOTALS:
            setattr(metric, name, getattr(spend, name))
    for row in ([merged_summary] if merged_summary is not None else []) + merged_metrics:
        session.delete(row)
    return {"contact_purchase_summary": int(merged_summary is not None),
            "contact_purchase_metrics": len(merged_metrics)}


def _merged_before(session, contact_id: uuid.UUID) -> list[uuid.UUID]:
    """Every id merged into `contact_id` earlier, directly or along a chain, in one round trip."""
    merges = ContactMerge.__table__
    first = select(merges.c.merged_id.label("id")).where(merges.c.survivor_id == contact_id).cte(
        "earlier", recursive=True)
    chain = first.union_all(select(merges.c.merged_id).join(first, merges.c.survivor_id == first.c.id))
    return sorted(session.scalars(select(chain.c.id)))


def _values(contact: Contact) -> dict:
    return {name: getattr(contact, name) for name in RECORD_FIELDS}


# -- use case ---------------------------------------------------------------------------------------------

def merge_contacts(uow: UnitOfWork, survivor_id: uuid.UUID, merged_id: uuid.UUID, *, actor: str,
                   dry_run: bool = False) -> dict:
    """Merge `merged_id` into `survivor_id` (or with `dry_run` only show the outcome, changing nothing).

    Returns the merged record, what moved (rows per table) and the fields the survivor took from the merged
    contact. 422 for the same id twice, 404 for an unknown id, 410 naming the survivor for a merged one.
    """
    if survivor_id == merged_id:
        raise Unprocessable("A contact cannot be merged into itself.",
                            errors={"merged_id": ["Must be another contact than survivor_id."]})
    with uow:
        session = uow.session
        survivor, merged = _pair(session, survivor_id, merged_id, lock=not dry_run)
        changes = merged_fields(_values(survivor), _values(merged))
        summaries, metrics = _purchase_rows(session, (survivor_id, merged_id), lock=not dry_run)
        totals = combined_purchases(summaries.values(), metrics)
        outcome = {"survivor_id": survivor_id, "merged_id": merged_id, "dry_run": dry_run, "filled": sorted(changes),
                   "merged_at": None, "merged_by": actor}
        if dry_run:
            moved = {**_counts(session, merged_id),
                     "contact_purchase_summary": int(merged_id in summaries),
                     "contact_purchase_metrics": sum(metric.contact_id == merged_id for metric in metrics),
                     "contact_payments": _move_payments(session, survivor_id, merged_id, dry_run=True),
                     "segment_members": session.scalar(select(func.count()).select_from(SegmentMember)
                                                       .where(SegmentMember.contact_id == merged_id)),
                     **_drop_analytics(session, merged_id, dry_run=True),
                     **_follow_termination(session, survivor_id, merged_id, dry_run=True)}
            record = {**_values(survivor), **changes, "version": survivor.version + 1}
            return {**outcome, "moved": moved, "contact": {**record, "purchases": totals.view()}}
        moved = {**_fold_purchases(session, survivor_id, merged_id, summaries, metrics, totals),
                 **_repoint(session, survivor_id, merged_id),
                 "contact_payments": _move_payments(session, survivor_id, merged_id),
                 "segment_members": _drop_memberships(session, merged_id), **_drop_analytics(session, merged_id),
                 **_follow_termination(session, survivor_id, merged_id)}
        for name, value in changes.items():
            setattr(survivor, name, value)
        survivor.version += 1
        session.delete(merged)
        merge = ContactMerge(merged_id=merged_id, survivor_id=survivor_id, merged_at=utcnow(), merged_by=actor,
                             moved=moved, filled=sorted(changes))
        session.add(merge)
        session.flush()
        uow.add_event("crm.contact.updated", {"contact_id": survivor_id, "changed": sorted(changes),
                                              "version": survivor.version}, subject=survivor_id)
        uow.add_event("crm.contact.merged", {"survivor_id": survivor_id, "merged_id": merged_id,
                                             "previously_merged_ids": _merged_before(session, merged_id)},
                      subject=survivor_id)
        uow.commit()
        return {**outcome, "moved": moved, "merged_at": merge.merged_at,
                "contact": {**_values(survivor), "purchases": totals.view()}}
