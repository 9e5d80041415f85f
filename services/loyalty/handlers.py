"""Integration-event handlers of the loyalty service."""
from __future__ import annotations

from services.common.catalog import Event
from services.common.consumer import event_cause, handles_batches
from services.common.uow import UnitOfWork

from . import erasure, freezes, merges, service


@handles_batches
def on_contact_created(uow: UnitOfWork, events: list[Event]) -> None:
    """Contacts were created: enrol them in the default program when that program enrols automatically."""
    service.enrol_contacts_automatically(uow, [event.data["contact_id"] for event in events],
                                         causes=[event_cause(event) for event in events])


@handles_batches
def on_contact_erased(uow: UnitOfWork, events: list[Event]) -> None:
    """People were erased: clear their ledger's free text, purge the messages naming them, confirm each erasure."""
    erasure.erase_people(uow, [event.data for event in events], causes=[event_cause(event) for event in events])


@handles_batches
def on_contact_merged(uow: UnitOfWork, events: list[Event]) -> None:
    """Contacts were merged: memberships follow to the survivor, two in one program become one."""
    merges.merge_memberships(uow, [event.data for event in events], causes=[event_cause(event) for event in events])


@handles_batches
def on_contact_terminated(uow: UnitOfWork, events: list[Event]) -> None:
    """Customers were terminated: every membership of theirs is frozen (crm.member.frozen), and any they get later."""
    freezes.freeze_contacts(uow, [event.data for event in events], causes=[event_cause(event) for event in events])


HANDLERS = {"crm.contact.created": on_contact_created, "crm.contact.erased": on_contact_erased,
            "crm.contact.merged": on_contact_merged, "crm.contact.terminated": on_contact_terminated}
