"""Erasure in the leads service: a person's leads anonymised, the messages naming them purged, then confirmed.

A person's leads are found by the contact they became (`contact_id`), by the lead ids contacts knows
(`lead_ids`), and by the normalised e-mail for leads that never converted. They are anonymised rather than
deleted, so campaign and source counts, scores and conversions still add up: every personal field goes, the
e-mail becomes `erased-<lead id>@erased.invalid` (RFC 2606: never deliverable, unique per lead), the score's
explanations (whose reasons may quote the person's fields) go, and an open lead is disqualified, as nobody is
left to work it. `STEPS` and `KEPT` are this service's one list of its tables (DESIGN §8).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import String, and_, case, cast, literal, or_, select

from services.common.db import utcnow
from services.common.erasure import (
    Erase,
    People,
    confirm_erasures,
    erase_tables,
    purge_messages,
)
from services.common.uow import UnitOfWork

from .models import OPEN_STATUSES, Base, IdempotencyRecord, Lead, OutboxMessage

ERASED_DOMAIN = "erased.invalid"


def _the_leads(table, people: People):
    """The people's leads: converted into their contacts, named by contacts, or never converted with their e-mail."""
    return or_(table.c.contact_id.in_(people.contact_ids), table.c.id.in_(people.lead_ids),
               and_(table.c.contact_id.is_(None), table.c.email_normalized.in_(people.emails_normalized)))


def _anonymised(table) -> dict:
    placeholder = literal("erased-") + cast(table.c.id, String) + literal(f"@{ERASED_DOMAIN}")
    return {"email": placeholder, "email_normalized": placeholder, "first_name": None, "last_name": None,
            "company": None, "job_title": None, "phone": None, "score_factors": [], "score_degraded": [],
            "status": case((table.c.status.in_(OPEN_STATUSES), "disqualified"), else_=table.c.status),
            "version": table.c.version + 1, "updated_at": utcnow()}


STEPS = (
    Erase("leads", _the_leads, values=_anonymised,
          why="e-mail, name, company, job title, phone and the score's reasons; counts, score and status stay"),
)

KEPT = {
    "lead_touches": "when, and from which source and campaign, each lead was captured again",
}


def erase_people(uow: UnitOfWork, erasures: Sequence[Mapping], *, causes: Sequence[Mapping]) -> dict[str, int]:
    """Erase the people of some crm.contact.erased payloads and confirm each; rows erased per table, for the batch.

    One statement per table for the whole batch, and one scan each of the outbox and the idempotency keys.
    Erasing again finds nothing left to erase and confirms again, which contacts takes as it took the first.
    """
    people = People.of(erasures)
    with uow:
        session = uow.session
        lead = Lead.__table__
        # Their own addresses as typed too: a message quotes a lead's e-mail as it was captured.
        found = session.execute(select(lead.c.id, lead.c.email).where(_the_leads(lead, people))
                                .order_by(lead.c.id).with_for_update()).all()
        people = people.with_(lead_ids=[row.id for row in found], emails=[row.email for row in found])
        erased = erase_tables(session, Base.metadata, STEPS, people)
        erased.update(purge_messages(session, OutboxMessage, IdempotencyRecord, people))
        confirm_erasures(uow, erasures, causes=causes)
        uow.commit()
        return erased
