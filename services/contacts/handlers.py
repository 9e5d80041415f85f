"""Integration-event handlers of the contacts service."""
from __future__ import annotations

from services.common.catalog import Event
from services.common.consumer import event_cause, handles_batches
from services.common.uow import UnitOfWork

from . import erasure, service, timeline, tombstones


@handles_batches
def on_lead_converted(uow: UnitOfWork, events: list[Event]) -> None:
    """Leads were converted: create their contacts, or match the contacts that have their e-mails; on the timeline."""
    results = service.create_or_match_contacts(uow, [event.data for event in events],
                                               causes=[event_cause(event) for event in events])
    timeline.add_entries(uow.session, [timeline.conversion_entry(event, contact.id, matched)
                                       for event, (contact, matched) in zip(events, results)])


@handles_batches
def on_purchase_recorded(uow: UnitOfWork, events: list[Event]) -> None:
    """Purchases were recorded: count each once in its contact's purchase metrics, and show it on the timeline."""
    # A purchase loyalty recorded before it handled a merge names the merged contact: count it on the survivor.
    moved = tombstones.survivors(uow.session, {event.data["contact_id"] for event in events})
    for event in events:
        purchase = event.data
        if purchase["contact_id"] in moved:
            purchase = {**purchase, "contact_id": moved[purchase["contact_id"]]}
        service.record_purchase_metrics(uow, purchase, event_id=event.id)
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


# The two erasure handlers also take `confirmers`, bound by erasure.with_confirmers (app.create_worker).
HANDLERS = {
    "crm.lead.converted": on_lead_converted,
    "crm.contact.erased": on_contact_erased,
    "crm.erasure.completed": on_erasure_completed,
    "crm.purchase.recorded": on_purchase_recorded,
    # Only add to the timeline (timeline.py builds each entry).
    "crm.lead.created": on_timeline_event,
    "crm.lead.touched": on_timeline_event,
    "crm.points.earned": on_timeline_event,
    "crm.points.redeemed": on_timeline_event,
    "crm.points.adjusted": on_timeline_event,
    "crm.member.enrolled": on_timeline_event,
    "crm.member.tier_changed": on_timeline_event,
    "crm.offer.sent": on_timeline_event,
}
