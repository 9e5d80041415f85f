"""Integration-event handlers of the leads service."""
from __future__ import annotations

from services.common.catalog import Event
from services.common.consumer import event_cause, handles_batches, ignores
from services.common.uow import UnitOfWork

from . import erasure, merges, service


def _no_lead(event: Event) -> bool:
    """A contact that no lead became (created through the API): nothing of ours to link."""
    return event.data.get("lead_id") is None


@ignores(_no_lead)
@handles_batches
def on_contact_created(uow: UnitOfWork, events: list[Event]) -> None:
    """Contacts were created or matched for some of our leads: link them and close the leads."""
    # The dispatcher passes no event _no_lead ignores; the filter keeps a direct call (tests, replays) right too.
    links = [(event.data["lead_id"], event.data["contact_id"]) for event in events if not _no_lead(event)]
    if links:
        service.link_contacts(uow, links)


@handles_batches
def on_contact_erased(uow: UnitOfWork, events: list[Event]) -> None:
    """People were erased: anonymise their leads, purge the messages naming them, confirm each erasure."""
    erasure.erase_people(uow, [event.data for event in events], causes=[event_cause(event) for event in events])


@handles_batches
def on_contact_merged(uow: UnitOfWork, events: list[Event]) -> None:
    """Contacts were merged: leads that named a merged contact name its survivor."""
    merges.repoint_merged_contacts(uow, [event.data for event in events])


HANDLERS = {"crm.contact.created": on_contact_created, "crm.contact.erased": on_contact_erased,
            "crm.contact.merged": on_contact_merged}
