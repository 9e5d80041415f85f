"""crm.contact.created in batches on the real PostgreSQL: the leads of a batch are linked with one read."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from services.common.catalog import make_event
from services.common.consumer import InboxDispatcher
from services.leads import handlers
from services.leads.models import Lead
from tests.support.auth import identity_headers

pytestmark = pytest.mark.integration

RW = identity_headers("leads:read", "leads:write")


@pytest.fixture
def leads(service_app):
    return service_app("leads")


def _created(contact_id: uuid.UUID, lead_id) -> object:
    return make_event("crm.contact.created", {"contact_id": contact_id, "email": "x@corp.example",
                                              "lead_id": lead_id, "matched": False}, source="/services/contacts")


def test_a_batch_links_each_converted_lead_and_skips_unknown_leads_and_contacts_without_a_lead(leads):
    c = leads.test_client()
    ids = []
    for i in range(3):
        lead = c.post("/api/v1/leads", headers=RW, json={"email": f"b{i}@corp.example"}).json
        c.post(f"/api/v1/leads/{lead['id']}/convert", headers=RW)
        ids.append(lead["id"])
    rt = leads.extensions["crm.runtime"]
    dispatcher = InboxDispatcher(lambda **kw: rt.uow(**kw), rt.inbox_model, handlers.HANDLERS)
    contacts = [uuid.uuid4() for _ in ids]
    batch = [_created(contacts[0], ids[0]), _created(uuid.uuid4(), None), _created(contacts[1], ids[1]),
             _created(uuid.uuid4(), str(uuid.uuid4())), _created(contacts[2], ids[2]),
             _created(contacts[0], ids[0])]  # the first lead's contact announced again: no second change

    assert dispatcher.dispatch_batch(batch) == [True] * 6

    for lead_id, contact_id in zip(ids, contacts):
        got = c.get(f"/api/v1/leads/{lead_id}", headers=RW).json
        assert (got["status"], got["contact_id"]) == ("converted", str(contact_id))
    with rt.session_factory() as s:
        versions = {str(lead.id): lead.version for lead in s.scalars(select(Lead))}
    assert versions[ids[0]] == versions[ids[1]], "the repeated link of the first lead changed nothing"


def test_a_contact_no_lead_became_costs_the_leads_worker_no_transaction(leads):
    """crm.contact.created without a lead_id (a contact created through the API) is ignored: no inbox row."""
    from sqlalchemy import func

    rt = leads.extensions["crm.runtime"]
    dispatcher = InboxDispatcher(lambda **kw: rt.uow(**kw), rt.inbox_model, handlers.HANDLERS)
    assert dispatcher.dispatch_batch([_created(uuid.uuid4(), None) for _ in range(3)]) == [True] * 3
    assert dispatcher.dispatch_batch([_created(uuid.uuid4(), None)]) == [True]
    with rt.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(rt.inbox_model)) == 0
