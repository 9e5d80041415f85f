"""crm.contact.merged in the leads service on the real PostgreSQL: leads name the survivor, once, in any order."""
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


def _dispatch(app, *events):
    rt = app.extensions["crm.runtime"]
    return InboxDispatcher(lambda **kw: rt.uow(**kw), rt.inbox_model, handlers.HANDLERS).dispatch_batch(list(events))


def _converted(app, contacts: list[uuid.UUID]) -> list[str]:
    """One converted lead per contact id, linked through crm.contact.created as the contacts service would."""
    client, ids, created = app.test_client(), [], []
    for i, contact_id in enumerate(contacts):
        lead = client.post("/api/v1/leads", headers=RW, json={"email": f"p{i}@corp.example"}).json
        client.post(f"/api/v1/leads/{lead['id']}/convert", headers=RW)
        ids.append(lead["id"])
        created.append(make_event("crm.contact.created", {"contact_id": contact_id, "email": f"p{i}@corp.example",
                                                          "lead_id": lead["id"], "matched": False},
                                  source="/services/contacts"))
    _dispatch(app, *created)
    return ids


def _merged(survivor_id, merged_id, previously=()):
    return make_event("crm.contact.merged", {"survivor_id": survivor_id, "merged_id": merged_id,
                                             "previously_merged_ids": list(previously)}, source="/services/contacts")


def _contacts_of(app) -> dict[str, tuple[uuid.UUID, int]]:
    with app.extensions["crm.runtime"].session_factory() as s:
        return {str(lead.id): (lead.contact_id, lead.version) for lead in s.scalars(select(Lead))}


def test_leads_of_a_merged_contact_name_the_survivor_and_a_redelivery_changes_nothing(leads):
    survivor, merged, bystander = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    ids = _converted(leads, [survivor, merged, merged, bystander])
    before = _contacts_of(leads)
    event = _merged(survivor, merged)

    assert _dispatch(leads, event) == [True]

    after = _contacts_of(leads)
    assert [after[i][0] for i in ids] == [survivor, survivor, survivor, bystander]
    assert [after[i][1] - before[i][1] for i in ids] == [0, 1, 1, 0]
    assert _dispatch(leads, event) == [False]
    assert _dispatch(leads, _merged(survivor, merged)) == [True]  # published again: nothing left to move
    assert _contacts_of(leads) == after
    got = leads.test_client().get(f"/api/v1/leads/{ids[1]}", headers=RW).json
    assert (got["status"], got["contact_id"]) == ("converted", str(survivor))


def test_chained_merges_end_at_the_last_survivor_whichever_event_comes_first(leads):
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    ids = _converted(leads, [a, b, c])
    assert _dispatch(leads, _merged(c, b, previously=[a]), _merged(b, a)) == [True, True]
    assert {contact for contact, _version in _contacts_of(leads).values()} == {c}
    assert len(ids) == 3
