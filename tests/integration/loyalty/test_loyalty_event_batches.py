"""crm.contact.created in batches on the real PostgreSQL: one enrolment per new contact, each with its own cause."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from services.common.catalog import make_event
from services.common.consumer import InboxDispatcher
from services.loyalty import handlers
from services.loyalty.models import Member
from tests.integration.loyalty.support import count, events, rw

pytestmark = pytest.mark.integration


def _created(contact_id: uuid.UUID, correlationid: str | None = None):
    return make_event("crm.contact.created", {"contact_id": contact_id, "email": "ann@corp.example",
                                              "lead_id": None, "matched": False}, source="/services/contacts",
                      correlationid=correlationid)


def test_a_batch_enrols_each_new_contact_once_and_leaves_members_alone(loyalty):
    rt = loyalty.extensions["crm.runtime"]
    dispatcher = InboxDispatcher(lambda **kw: rt.uow(**kw), rt.inbox_model, handlers.HANDLERS)
    joined = uuid.uuid4()
    member = loyalty.test_client().post("/api/v1/loyalty/members", headers=rw(),
                                        json={"contact_id": str(joined)}).json
    a, b = uuid.uuid4(), uuid.uuid4()
    batch = [_created(a, "req-a"), _created(joined, "req-j"), _created(b, None), _created(a, "req-a2")]

    assert dispatcher.dispatch_batch(batch) == [True] * 4

    assert count(loyalty, Member) == 3
    assert count(loyalty, Member, Member.contact_id == a) == 1
    enrolled = events(loyalty, "crm.member.enrolled")[1:]  # after the API enrolment
    # Each enrolment names the first event that asked for it.
    assert [(e["data"]["contact_id"], e["correlationid"], e["causationid"]) for e in
            sorted(enrolled, key=lambda e: e["data"]["contact_id"] != str(a))] == [
        (str(a), "req-a", str(batch[0].id)), (str(b), str(batch[2].id), str(batch[2].id))]
    with rt.session_factory() as s:
        assert str(s.scalar(select(Member.id).where(Member.contact_id == joined))) == member["id"]
