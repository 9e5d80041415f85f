"""Erasure (GDPR art. 17): a person's personal data leaves contacts, then every other service (docs/api-contacts.md).

The request erases the person's rows here in one transaction and records `crm.contact.erased`; every service
that handles that event (the contacts worker among them) erases what it keeps and confirms, and when every
one of them has, the erasure is `completed` and the event's own outbox row, which carries the e-mail, goes.
Which services must confirm comes from the registry's bindings (`with_confirmers`), never from a list here.

`STEPS` and `KEPT` are this service's one list of its tables (DESIGN §8); tests fail when a table is on neither.
"""
from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence

from sqlalchemy import bindparam, delete, func, insert, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from services.common.broker import Bindings
from services.common.db import new_id, utcnow
from services.common.erasure import (
    COMPLETED,
    ERASED,
    Erase,
    People,
    confirming_services,
    containing,
    erase_tables,
    purge_messages,
    service_name,
)
from services.common.problems import NotFound
from services.common.uow import UnitOfWork

from .models import (
    Base,
    Contact,
    ContactLead,
    ContactMerge,
    Erasure,
    ErasureConfirmation,
    IdempotencyRecord,
    OutboxMessage,
)
from .tombstones import missing_contact

ERASE_SCOPE = "contacts:erase"
ERASING, COMPLETED_STATUS = "erasing", "completed"
ERASED_REASON = "(erased)"  # what a termination decision's reason becomes


def _of_contact(table, people: People):
    return table.c.contact_id.in_(people.contact_ids)


def _of_subject(table, people: People):
    return table.c.subject_id.in_(people.contact_ids)


# What an erasure does to each table that holds the person; one statement each, in this order.
STEPS = (
    Erase("contacts", lambda t, p: t.c.id.in_(p.contact_ids),
          why="the record: name, e-mail, phone, company, tags, attributes and current consents"),
    Erase("interactions", _of_contact, why="calls, meetings, e-mails, complaints and notes, with their text"),
    Erase("consent_changes", _of_contact, why="the consent history"),
    Erase("contact_payments", _of_contact, why="the person's invoices: references, amounts and payment dates"),
    Erase("contact_fraud_flags", _of_contact, why="fraud suspicions, with the reasons written about the person"),
    # The scores stay under the (pseudonymous) contact id, so NPS and CSAT figures do not change; the comment
    # is the person's own words.
    Erase("feedback", _of_contact, values=lambda t: {"comment": None}, why="comments; scores stay"),
    Erase("timeline_entries", lambda t, p: or_(t.c.contact_id.in_(p.contact_ids), t.c.lead_id.in_(p.lead_ids)),
          why="the person's stream, the entries of their leads included"),
    Erase("contact_leads", _of_contact, why="which leads the person came from"),
    Erase("segment_members", _of_contact, why="the segments the person was in at the last refresh"),
    Erase("customer_analytics", _of_contact, why="the person's measures in the kept analytics snapshots"),
    Erase("contact_stages", _of_contact, why="the person's lifecycle stage"),
    Erase("termination_run_subjects", _of_subject, why="termination findings and evidence about the person in runs"),
    Erase("termination_recommendations", _of_subject, why="termination recommendations with findings and evidence"),
    # A decision stays (who decided what, and its effect: the audit trail); its reason and evidence describe the
    # person and go.
    Erase("termination_decisions", _of_subject, values=lambda t: {"reason": ERASED_REASON, "findings": []},
          why="the reason and the evidence of termination decisions about the person"),
    Erase("contact_import_errors", lambda t, p: containing(t.c.message, p.emails | p.emails_normalized),
          why="import messages quoting the address"),
    # A file is kept only until its import ends; one with the person in it goes, and the import fails when it
    # starts or resumes (a chunk being applied right now may still bring the contact back).
    Erase("contact_import_files", lambda t, p: containing(t.c.content, p.emails | p.emails_normalized),
          why="the uploaded CSV of an import still running"),
)

# Tables kept as they are, and why they hold nothing that identifies the person.
KEPT = {
    "contact_purchases": "purchase ids, amounts, margins, discounts and times under the pseudonymous contact id",
    "contact_returns": "return and purchase ids, amounts, margins and times under the pseudonymous contact id",
    "contact_purchase_summary": "counts and times under the pseudonymous contact id",
    "contact_purchase_metrics": "totals per currency (spent, returned, margin, discount) under the pseudonymous "
                                "contact id",
    "accounts": "companies, not people",
    "attribute_definitions": "the names and types of custom attributes",
    "contact_imports": "counts, the column mapping and the key that ran it",
    "contact_merges": "ids and counts only",
    "erasures": "ids and counts only: the record that the person was erased",
    "erasure_confirmations": "service names and times",
    "analytics_refreshes": "a refresh's currency, parameters, progress and the key that asked for it: no person",
    "segments": "rule sets written by operators; who is in them is segment_members, which the erasure deletes",
    "termination_policies": "policy records: codes, plugins and parameters, no person",
    "termination_runs": "a run's policy snapshot, progress and counts: no person",
    "termination_run_findings": "finding codes under a run id and a contact's sequence number only",
}


# Every contact merged into one (directly or along a chain): its records moved there, but other services and
# the message history may still name the person by those ids.
_EARLIER = (select(ContactMerge.merged_id.label("id")).where(ContactMerge.survivor_id == bindparam("contact_id"))
            .cte("earlier", recursive=True))
_CHAIN = _EARLIER.union_all(select(ContactMerge.merged_id).join(_EARLIER, ContactMerge.survivor_id == _EARLIER.c.id))
_MERGED_INTO = select(_CHAIN.c.id)


# -- views ------------------------------------------------------------------------------------------------

def _view(erasure: Erasure, confirmations: Iterable[ErasureConfirmation]) -> dict:
    """An erasure as the API shows it: every service expected or heard from, with when it confirmed."""
    confirmed = {c.service: c.confirmed_at for c in confirmations}
    services = sorted(set(erasure.expected_services or ()) | set(confirmed))
    return {"id": erasure.id, "contact_id": erasure.contact_id, "status": erasure.status,
            "requested_at": erasure.requested_at, "completed_at": erasure.completed_at, "erased": erasure.erased,
            "services": [{"service": name, "confirmed_at": confirmed.get(name)} for name in services]}


def _erasure_of(session: Session, contact_id: uuid.UUID) -> Erasure | None:
    return session.scalar(select(Erasure).where(Erasure.contact_id == contact_id))


def _confirmations(session: Session, erasure_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[ErasureConfirmation]]:
    found: dict[uuid.UUID, list[ErasureConfirmation]] = {}
    stmt = select(ErasureConfirmation).where(ErasureConfirmation.erasure_id.in_(set(erasure_ids)))
    for confirmation in session.scalars(stmt):
        found.setdefault(confirmation.erasure_id, []).append(confirmation)
    return found


# -- use cases --------------------------------------------------------------------------------------------

def erase_contact(uow: UnitOfWork, contact_id: uuid.UUID, *, requested_by: str) -> tuple[dict, bool]:
    """Erase a person here and ask every service to; returns (the erasure, created). Again: the same erasure."""
    with uow:
        session = uow.session
        erasure = _erasure_of(session, contact_id)
        if erasure is None:
            # Locked: a concurrent erasure (or a write) of this contact waits, and then finds it gone.
            contact = session.execute(select(Contact.email, Contact.origin_lead_id).where(Contact.id == contact_id)
                                      .with_for_update()).one_or_none()
            if contact is None:
                erasure = _erasure_of(session, contact_id)  # the concurrent erasure we waited for
                if erasure is None:
                    raise missing_contact(session, contact_id)
        if erasure is not None:
            return _view(erasure, _confirmations(session, [erasure.id]).get(erasure.id, [])), False
        lead_ids = set(session.scalars(select(ContactLead.lead_id).where(ContactLead.contact_id == contact_id)))
        lead_ids |= {contact.origin_lead_id} - {None}
        merged_ids = set(session.scalars(_MERGED_INTO, {"contact_id": contact_id}))
        people = People(contact_ids=frozenset({contact_id, *merged_ids}), lead_ids=frozenset(lead_ids),
                        emails=frozenset({contact.email}))
        erased = erase_tables(session, Base.metadata, STEPS, people)
        erasure_id = new_id()
        event = uow.add_event(ERASED, {"erasure_id": erasure_id, "contact_id": contact_id, "email": contact.email,
                                       "lead_ids": sorted(lead_ids, key=str), "merged_ids": sorted(merged_ids, key=str)},
                              subject=contact_id)
        erasure = Erasure(id=erasure_id, contact_id=contact_id, status=ERASING, erased=erased, event_id=event.id,
                          requested_by=requested_by, requested_at=utcnow())
        session.add(erasure)
        uow.commit()
        return _view(erasure, []), True


def get_erasure(uow: UnitOfWork, erasure_id: uuid.UUID) -> dict:
    """One erasure with its status and the services' confirmations (404 when unknown)."""
    with uow:
        session = uow.session
        rows = session.execute(
            select(Erasure, ErasureConfirmation)
            .outerjoin(ErasureConfirmation, ErasureConfirmation.erasure_id == Erasure.id)
            .where(Erasure.id == erasure_id)).all()
        if not rows:
            raise NotFound(f"No erasure with id {erasure_id}.")
        return _view(rows[0][0], [confirmation for _erasure, confirmation in rows if confirmation is not None])


def erase_history(uow: UnitOfWork, erasures: Sequence[Mapping], *, confirmers: Sequence[str]) -> dict[str, int]:
    """Our own crm.contact.erased came back: erase again what raced the request, purge the messages, confirm.

    Runs in the worker, so the scan of the outbox and the idempotency keys is not a request's (DESIGN §6): the
    sent rows and stored responses naming the people go, except the erasure events themselves, which go once
    every service has confirmed. Rows written for the person after the request (a write that raced it) are
    erased here too. Returns the rows erased per table, for the batch.
    """
    people = People.of(erasures)
    with uow:
        session = uow.session
        erased = erase_tables(session, Base.metadata, STEPS, people)
        # Every row before the newest of these erasure events was sent before it, which has come back.
        newest = session.scalar(select(func.max(OutboxMessage.seq))
                                .join(Erasure, Erasure.event_id == OutboxMessage.event_id)
                                .where(Erasure.id.in_([e["erasure_id"] for e in erasures])))
        erased.update(purge_messages(session, OutboxMessage, IdempotencyRecord, people, keep_types=(ERASED,),
                                     sent_before=newest))
        _record_confirmations(session, [(e["erasure_id"], service_name(uow)) for e in erasures], confirmers)
        uow.commit()
        return erased


def record_confirmations(uow: UnitOfWork, confirmations: Sequence[Mapping], *, confirmers: Sequence[str]) -> None:
    """Services confirmed erasures (crm.erasure.completed payloads): record them, complete what is complete."""
    with uow:
        _record_confirmations(uow.session, [(c["erasure_id"], c["service"]) for c in confirmations], confirmers)
        uow.commit()


def _record_confirmations(session: Session, confirmed: list[tuple[uuid.UUID, str]], confirmers: Sequence[str]) -> None:
    """Record (erasure id, service) confirmations; an erasure every expected service confirmed is completed.

    The erasures are locked first (in id order), so two workers confirming one erasure at once take turns and
    the second sees the first's confirmation: whichever comes last completes it. An unknown erasure id (not
    this database's) is ignored.
    """
    ids = sorted({erasure_id for erasure_id, _service in confirmed}, key=str)
    erasures = list(session.scalars(select(Erasure).where(Erasure.id.in_(ids)).order_by(Erasure.id)
                                    .with_for_update().execution_options(populate_existing=True)))
    known = {erasure.id for erasure in erasures}
    rows = {(erasure_id, service): {"erasure_id": erasure_id, "service": service, "confirmed_at": utcnow()}
            for erasure_id, service in confirmed if erasure_id in known}
    if rows:
        if session.get_bind().dialect.name == "postgresql":
            stmt = pg_insert(ErasureConfirmation).on_conflict_do_nothing(index_elements=["erasure_id", "service"])
        else:
            stmt = insert(ErasureConfirmation).prefix_with("OR IGNORE")
        session.execute(stmt, list(rows.values()))
    confirmations = _confirmations(session, known)
    done = []
    for erasure in erasures:
        if erasure.expected_services is None:
            erasure.expected_services = list(confirmers)
        heard = {c.service for c in confirmations.get(erasure.id, [])}
        if erasure.status != COMPLETED_STATUS and set(erasure.expected_services) <= heard:
            erasure.status, erasure.completed_at = COMPLETED_STATUS, utcnow()
            done.append(erasure.event_id)
    if done:
        # Every service has handled the event, so the broker delivered it: its row (with the e-mail) may go,
        # published or not yet marked so (a confirm can beat the relay's mark; the relay then marks nothing).
        session.execute(delete(OutboxMessage).where(OutboxMessage.event_id.in_(done)))


def with_confirmers(handlers: Mapping[str, Callable], bindings: Bindings) -> dict[str, Callable]:
    """`handlers` with the erasure handlers told which services must confirm: those bound to crm.contact.erased."""
    confirmers = confirming_services(bindings)

    def told(handler):
        # Same name (the inbox key) and batch marker as the handler itself.
        return functools.update_wrapper(functools.partial(handler, confirmers=confirmers), handler)

    return {event_type: told(handler) if event_type in (ERASED, COMPLETED) else handler
            for event_type, handler in handlers.items()}
