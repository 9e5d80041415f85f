"""Integration-event handlers of the contacts service."""
from __future__ import annotations

from services.common.catalog import Event
from services.common.consumer import event_cause, handles_batches
from services.common.termination.evidence import evaluates_termination
from services.common.uow import UnitOfWork

from . import erasure, purchase_facts, service, timeline


PURCHASE_RECORDED, PURCHASE_RETURNED = "crm.purchase.recorded", "crm.purchase.returned"


@handles_batches
def on_lead_converted(uow: UnitOfWork, events: list[Event]) -> None:
    """Leads were converted: create their contacts, or match the contacts that have their e-mails; on the timeline."""
    results = service.create_or_match_contacts(uow, [event.data for event in events],
                                               causes=[event_cause(event) for event in events])
    timeline.add_entries(uow.session, [timeline.conversion_entry(event, contact.id, matched)
                                       for event, (contact, matched) in zip(events, results)])


@handles_batches
def on_purchase_facts(uow: UnitOfWork, events: list[Event]) -> None:
    """Purchases were recorded or returned: keep each once in the fact table and its contact's totals; timeline."""
    # One handler for both types, so a batch adds its purchases and returns to the totals in one pass (one lock
    # order). A fact loyalty recorded before it handled a merge names the merged contact: it lands on the survivor.
    purchase_facts.record_facts(uow, [(event.data, event.id) for event in events if event.type == PURCHASE_RECORDED],
                                [(event.data, event.id) for event in events if event.type == PURCHASE_RETURNED])
    timeline.add_entries(uow.session, [timeline.from_event(event) for event in events])


@handles_batches
def on_timeline_event(uow: UnitOfWork, events: list[Event]) -> None:
    """Leads' and loyalty's events about a person (or a person's lead): one timeline entry each."""
    timeline.add_entries(uow.session, [timeline.from_event(event) for event in events])


@handles_batches
def on_contact_erased(uow: UnitOfWork, events: list[Event], *, confirmers) -> None:
    """Our erasures reached the broker: purge the messages naming the people, and confirm for contacts."""
    erasure.erase_history(uow, [event.data for event in events], confirmers=confirmers)


@handles_batches
def on_erasure_completed(uow: UnitOfWork, events: list[Event], *, confirmers) -> None:
    """Services confirmed erasures: record each; an erasure every service confirmed is completed."""
    erasure.record_confirmations(uow, [event.data for event in events], confirmers=confirmers)


@handles_batches
@evaluates_termination
def on_termination_evidence(uow: UnitOfWork, events: list[Event], *, evaluate) -> None:
    """Complaints, invoice payments or fraud flags were recorded: evaluate the enabled termination policies on
    the contacts they name (purchases and returns are evaluated after on_purchase_facts, see termination.py)."""
    evaluate(uow, events)


# The two erasure handlers also take `confirmers`, bound by erasure.with_confirmers (app.create_worker), and the
# termination evidence handler `evaluate`, bound by termination.with_evaluation (which also evaluates after the
# purchase facts).
HANDLERS = {
    "crm.lead.converted": on_lead_converted,
    "crm.contact.erased": on_contact_erased,
    "crm.erasure.completed": on_erasure_completed,
    PURCHASE_RECORDED: on_purchase_facts,
    PURCHASE_RETURNED: on_purchase_facts,
    "crm.interaction.recorded": on_termination_evidence,
    "crm.payment.recorded": on_termination_evidence,
    "crm.contact.flagged": on_termination_evidence,
    # Only add to the timeline (timeline.py builds each entry).
    "crm.lead.created": on_timeline_event,
    "crm.lead.touched": on_timeline_event,
    "crm.points.earned": on_timeline_event,
    "crm.points.redeemed": on_timeline_event,
    "crm.points.adjusted": on_timeline_event,
    "crm.points.reclaimed": on_timeline_event,
    "crm.member.enrolled": on_timeline_event,
    "crm.member.tier_changed": on_timeline_event,
    "crm.offer.sent": on_timeline_event,
}
