"""Contact use cases: the only code that changes contacts, each in one unit of work."""
from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import bindparam, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from services.common.db import new_id, utcnow
from services.common.emails import normalize_email
from services.common.pagination import paginate
from services.common.etags import NO_PRECONDITION, Precondition
from services.common.problems import Conflict
from services.common.uow import UnitOfWork, insert_or_reread

from . import timeline
from .accounts import account_ids_for_emails
from .analytics.contact_measures import RECORD_COLUMNS, contact_measures_view, with_contact_measures
from .filters import SORT_COLUMNS, checked_filters, contacts_statement
from .purchase_facts import TOTALS, Spend, purchases_view
from .record_fields import changed_record_fields, new_record_fields
from .tombstones import missing_contact
from .models import (
    PROFILE_FIELDS,
    PROFILE_LIMITS,
    Contact,
    ContactPurchaseMetric,
    ContactPurchaseSummary,
)

EDITABLE_FIELDS = ("email",) + PROFILE_FIELDS
READ_SCOPE = "contacts:read"


# -- pure rules -------------------------------------------------------------------------------------------

def profile_from_lead(lead: Mapping) -> dict:
    """The profile values a converted lead offers: trimmed, blanks dropped, clipped to the column widths."""
    offered = {}
    for name, limit in PROFILE_LIMITS.items():
        value = lead.get(name)
        if isinstance(value, str) and value.strip():
            # The catalog does not bound lengths; clipping beats parking the conversion in the DLQ.
            offered[name] = value.strip()[:limit]
    return offered


def gaps_to_fill(current: Mapping, offered: Mapping) -> dict:
    """The offered values for profile fields that are still empty: matching fills gaps, never overwrites."""
    return {name: value for name, value in offered.items()
            if name in PROFILE_FIELDS and value and not current.get(name)}


def changed_values(current: Mapping, requested: Mapping) -> dict:
    """The requested values that differ from the current ones (an unchanged PATCH is a no-op)."""
    return {name: value for name, value in requested.items()
            if name in EDITABLE_FIELDS and current.get(name) != value}


# -- queries ----------------------------------------------------------------------------------------------

def _values(contact: Contact) -> dict:
    return {name: getattr(contact, name) for name in EDITABLE_FIELDS}


def _by_email(session: Session, email_normalized: str, *, lock: bool = False) -> Contact | None:
    stmt = select(Contact).where(Contact.email_normalized == email_normalized)
    if lock:
        stmt = stmt.with_for_update()
    return session.scalar(stmt)


def _get(session: Session, contact_id: uuid.UUID, *, lock: bool = False) -> Contact:
    stmt = select(Contact).where(Contact.id == contact_id)
    if lock:
        stmt = stmt.with_for_update()
    contact = session.scalar(stmt)
    if contact is None:
        raise missing_contact(session, contact_id)
    return contact


def _insert_unless_taken(session: Session, contact: Contact, *, lock: bool = False) -> Contact | None:
    """Insert `contact`; when its e-mail is taken (also by a concurrent writer), return the holder instead."""
    return insert_or_reread(session, contact, reread=lambda: _by_email(session, contact.email_normalized, lock=lock))


def _duplicate(holder: Contact) -> Conflict:
    # Only a caller that may read contacts learns which contact holds the address.
    return Conflict(f"Contact {holder.id} already has this e-mail address.", existing_contact_id=str(holder.id)
                    ).for_readers(READ_SCOPE, otherwise="Another contact already has this e-mail address.")


def _record_update(uow: UnitOfWork, contact: Contact, changed: Iterable[str], **cause) -> None:
    contact.version += 1
    uow.add_event("crm.contact.updated",
                  {"contact_id": contact.id, "changed": sorted(changed), "version": contact.version},
                  subject=contact.id, **cause)


def _by_emails(session: Session, emails: Iterable[str]) -> dict[str, Contact]:
    """The contacts holding these normalised e-mails, locked, in one round trip.

    Sorted, so two workers locking overlapping sets take the locks in the same order. populate_existing: a
    row re-read after a clash must show what the winner committed, not a stale copy in the session.
    """
    stmt = (select(Contact).where(Contact.email_normalized.in_(sorted(set(emails))))
            .order_by(Contact.email_normalized).with_for_update().execution_options(populate_existing=True))
    return {contact.email_normalized: contact for contact in session.scalars(stmt)}


# Executed with a list of rows: compiled once and cached (a multi-row .values() is compiled again each time).
_INSERT_NEW = (pg_insert(Contact).on_conflict_do_nothing(index_elements=["email_normalized"]).returning(Contact))


def _insert_new(session: Session, rows: list[dict]) -> tuple[dict[str, Contact], set[str]]:
    """Insert contacts from `rows` (one per e-mail); returns the contact per e-mail and the e-mails already taken.

    A taken e-mail (a concurrent worker created it first) maps to its holder, locked. On PostgreSQL one
    INSERT ... ON CONFLICT DO NOTHING RETURNING for all rows; it waits for a concurrent insert of the same
    e-mail to end, so the re-read that follows sees the winner. Elsewhere one savepoint per row.
    """
    if session.get_bind().dialect.name != "postgresql":
        contacts, taken = {}, set()
        for row in rows:
            contact = Contact(**row)
            holder = _insert_unless_taken(session, contact, lock=True)
            contacts[row["email_normalized"]] = holder or contact
            if holder is not None:
                taken.add(row["email_normalized"])
        return contacts, taken
    now = utcnow()
    # Sorted: two workers inserting overlapping e-mails wait for each other in the same order.
    values = [{"created_at": now, "updated_at": now, "version": 1, **row}
              for row in sorted(rows, key=lambda row: row["email_normalized"])]
    contacts = {contact.email_normalized: contact for contact in session.scalars(_INSERT_NEW, values)}
    taken = {row["email_normalized"] for row in rows} - set(contacts)
    if taken:
        holders = _by_emails(session, taken)
        if len(holders) != len(taken):
            # The winner is gone again (erased meanwhile): fail, and the retry inserts it.
            raise LookupError(f"contacts for {sorted(taken - set(holders))} clashed but are not there")
        contacts.update(holders)
    return contacts, taken


# -- use cases --------------------------------------------------------------------------------------------

def create_contact(uow: UnitOfWork, data: Mapping) -> Contact:
    """Create a contact; an e-mail that another contact holds (after normalisation) is a 409."""
    email = data["email"].strip()
    email_normalized = normalize_email(email)
    with uow:
        session = uow.session
        # No look-up first: the insert itself finds a holder of the e-mail (ON CONFLICT on PostgreSQL), so a
        # new contact costs one round trip, not a SELECT, a SAVEPOINT, the INSERT and a RELEASE.
        row = {"id": new_id(), "email": email, "email_normalized": email_normalized,
               **{name: data.get(name) for name in PROFILE_FIELDS},
               **new_record_fields(session, data, email_normalized)}
        # The record fields are checked before the insert, so a body that is wrong is a 422 even when the e-mail
        # is taken (docs/api-contacts.md). A taken e-mail's holder comes back locked; the 409 rolls back at once.
        inserted, taken = _insert_new(session, [row])
        if taken:
            raise _duplicate(inserted[email_normalized])
        contact = inserted[email_normalized]
        uow.add_event("crm.contact.created",
                      {"contact_id": contact.id, "email": contact.email, "lead_id": None, "matched": False},
                      subject=contact.id)
        uow.commit()
        return contact


def create_or_match_contact(uow: UnitOfWork, lead: Mapping) -> tuple[Contact, bool]:
    """Turn a converted lead into a contact, or match the contact with its e-mail; returns (contact, matched).

    A match only fills the contact's empty fields. Either way `crm.contact.created` names the lead, so the
    leads service can link it; `matched` is true when the contact existed before, for another lead or none.
    """
    [result] = create_or_match_contacts(uow, [lead])
    return result


def create_or_match_contacts(uow: UnitOfWork, leads: Sequence[Mapping], *,
                             causes: Sequence[Mapping] | None = None) -> list[tuple[Contact, bool]]:
    """create_or_match_contact for many leads at once, in order; one (contact, matched) per lead.

    The result is the same as converting the leads one after the other: a later lead with the e-mail of an
    earlier one matches the contact the earlier one created. `causes[i]` (add_event keywords, see
    consumer.event_cause) are the correlation and causation ids of the events recorded for `leads[i]`.
    """
    offers = []
    for lead in leads:
        email = lead["email"].strip()
        offers.append((lead["lead_id"], email, normalize_email(email), profile_from_lead(lead)))
    with uow:
        session = uow.session
        # Locked, so two workers matching one contact at once fill its gaps one after the other.
        contacts = _by_emails(session, (norm for _l, _e, norm, _o in offers))
        new_rows = {}
        for lead_id, email, norm, offered in offers:
            if norm not in contacts and norm not in new_rows:
                new_rows[norm] = {"id": new_id(), "email": email, "email_normalized": norm,
                                  "origin_lead_id": lead_id, **{name: offered.get(name) for name in PROFILE_FIELDS}}
        created = set()
        if new_rows:
            # A new contact joins the account of its e-mail domain (accounts.py).
            accounts = account_ids_for_emails(session, new_rows)
            for norm, row in new_rows.items():
                row["account_id"] = accounts.get(norm)
            inserted, taken = _insert_new(session, list(new_rows.values()))
            contacts.update(inserted)
            created = set(new_rows) - taken
        results = []
        for index, (lead_id, _email, norm, offered) in enumerate(offers):
            cause = causes[index] if causes else {}
            contact = contacts[norm]
            # Only the first lead of a new e-mail created its contact; every later one finds it there.
            existed = norm not in created
            created.discard(norm)
            if existed:
                gaps = gaps_to_fill(_values(contact), offered)
                for name, value in gaps.items():
                    setattr(contact, name, value)
                if gaps:
                    _record_update(uow, contact, gaps, **cause)
            matched = existed and contact.origin_lead_id != lead_id
            uow.add_event("crm.contact.created",
                          {"contact_id": contact.id, "email": contact.email, "lead_id": lead_id, "matched": matched},
                          subject=contact.id, **cause)
            results.append((contact, matched))
        # The lead's history (captures, touches) joins the person's timeline through this link.
        timeline.link_leads(session, [(offer[0], contact.id) for offer, (contact, _m) in zip(offers, results)])
        uow.commit()
        return results


def get_contact(uow: UnitOfWork, contact_id: uuid.UUID) -> Contact:
    """One contact by its public id (404 when unknown)."""
    with uow:
        return _get(uow.session, contact_id)


_CONTACTS = Contact.__table__
_SUMMARY = ContactPurchaseSummary.__table__
_METRICS = ContactPurchaseMetric.__table__

# One round trip: the contact with its summary, one row per currency and its measures in the base currency's
# snapshot (LEFT JOINs, so a contact without purchases or measures is one row of NULLs on the right). At most a
# handful of currencies repeat the contact's columns.
# Plain columns rather than ORM entities, and built once: loading three mapped objects per row and building
# the statement per call cost more CPU than the query itself.
_CONTACT_DETAILS = (
    select(*_CONTACTS.columns, _SUMMARY.c.purchase_count, _SUMMARY.c.first_purchase_at, _SUMMARY.c.last_purchase_at,
           *(_METRICS.c[name].label(f"metric_{name}") for name in ("currency", *TOTALS)))
    .add_columns(*RECORD_COLUMNS)
    .select_from(with_contact_measures(_CONTACTS.outerjoin(_SUMMARY, _SUMMARY.c.contact_id == _CONTACTS.c.id)
                                       .outerjoin(_METRICS, _METRICS.c.contact_id == _CONTACTS.c.id), _CONTACTS.c.id))
    .where(_CONTACTS.c.id == bindparam("contact_id"))
    .order_by(_METRICS.c.currency)
)
_CONTACT_KEYS = tuple(column.key for column in _CONTACTS.columns)


def get_contact_details(uow: UnitOfWork, contact_id: uuid.UUID, *, analytics_currency: str | None = None) -> dict:
    """One contact's fields, `purchases` block and `analytics` in that currency's snapshot (404 when unknown)."""
    with uow:
        rows = uow.session.execute(_CONTACT_DETAILS, {"contact_id": contact_id,
                                                      "analytics_currency": analytics_currency}).all()
        if not rows:
            raise missing_contact(uow.session, contact_id)
    first = rows[0]
    summary = first if first.purchase_count is not None else None
    metrics = [Spend(row.metric_currency, *(row._mapping[f"metric_{name}"] for name in TOTALS))
               for row in rows if row.metric_currency is not None]
    return {**{key: first._mapping[key] for key in _CONTACT_KEYS}, "purchases": purchases_view(summary, metrics),
            "analytics": contact_measures_view(first._mapping)}


def list_contacts(uow: UnitOfWork, *, limit: int, cursor: str | None, sort: str | None = None, **filters) -> dict:
    """Contacts newest first or by `sort`, narrowed by the list's filters (filters.py), one page at a time."""
    with uow:
        stmt = contacts_statement(**checked_filters(uow.session, filters))
        return paginate(uow.session, stmt, Contact.seq, limit=limit, cursor=cursor, sort=sort, columns=SORT_COLUMNS)


def update_contact(uow: UnitOfWork, contact_id: uuid.UUID, requested: Mapping, *,
                   precondition: Precondition = NO_PRECONDITION) -> Contact:
    """Change some fields of a contact; a `precondition` (from If-Match) guards against lost updates (optional)."""
    with uow:
        session = uow.session
        # Locked, so the version check and the write are one step even under concurrent PATCHes.
        contact = _get(session, contact_id, lock=True)
        precondition.check(contact.version, required=False, what=f"contact {contact_id}")
        changes = changed_values(_values(contact), requested)
        changes.update(changed_record_fields(session, contact, requested))
        if not changes:
            return contact
        new_normalized = normalize_email(changes["email"]) if "email" in changes else contact.email_normalized
        email_moves = new_normalized != contact.email_normalized
        if email_moves:
            holder = _by_email(session, new_normalized)
            if holder is not None:
                raise _duplicate(holder)
        for name, value in changes.items():
            setattr(contact, name, value)
        contact.email_normalized = new_normalized
        _record_update(uow, contact, changes)
        if email_moves:
            # A concurrent writer may have taken the new e-mail since the check above.
            holder = insert_or_reread(session, reread=lambda: _by_email(session, new_normalized))
            if holder is not None:
                raise _duplicate(holder)
        uow.commit()
        return contact
