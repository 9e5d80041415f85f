"""Contact use cases on an in-memory SQLite database (no files, no network)."""
from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import func, select

from services.common.etags import Precondition
from services.common.problems import Conflict, NotFound, PreconditionFailed
from services.contacts import service
from services.contacts.models import Contact, OutboxMessage


def _contacts(rt) -> list[Contact]:
    with rt.session_factory() as s:
        return list(s.scalars(select(Contact)))


def _events(rt, event_type: str) -> list[dict]:
    with rt.session_factory() as s:
        rows = s.scalars(select(OutboxMessage).where(OutboxMessage.event_type == event_type).order_by(OutboxMessage.seq))
        return [json.loads(r.payload)["data"] for r in rows]


def _lead(email="ann@example.com", **profile) -> dict:
    return {"lead_id": uuid.uuid4(), "email": email, **profile}


def test_converting_a_new_lead_creates_a_contact_from_its_data(runtime):
    lead = _lead("Ann@Example.com", first_name="Ann", company="Acme")
    contact, matched = service.create_or_match_contact(runtime.uow(), lead)
    assert not matched
    assert (contact.email, contact.email_normalized, contact.first_name, contact.company, contact.origin_lead_id) == \
        ("Ann@Example.com", "ann@example.com", "Ann", "Acme", lead["lead_id"])
    assert _events(runtime, "crm.contact.created") == [
        {"contact_id": str(contact.id), "email": "Ann@Example.com", "lead_id": str(lead["lead_id"]), "matched": False}]


def test_converting_twice_returns_the_same_contact(runtime):
    lead = _lead(first_name="Ann")
    first, _ = service.create_or_match_contact(runtime.uow(), lead)
    second, matched = service.create_or_match_contact(runtime.uow(), lead)
    assert second.id == first.id
    assert not matched  # the contact is this lead's own, not a match to someone else's
    assert len(_contacts(runtime)) == 1


def test_a_lead_with_a_known_email_is_matched_and_only_fills_empty_fields(runtime):
    existing = service.create_contact(runtime.uow(), {"email": "ann@example.com", "first_name": "Ann"})
    lead = _lead("ANN@example.com ", first_name="Annie", last_name="Lee", company="Acme")
    contact, matched = service.create_or_match_contact(runtime.uow(), lead)
    assert matched and contact.id == existing.id
    assert (contact.first_name, contact.last_name, contact.company, contact.version) == ("Ann", "Lee", "Acme", 2)
    assert _events(runtime, "crm.contact.updated") == [
        {"contact_id": str(existing.id), "changed": ["company", "last_name"], "version": 2}]
    assert _events(runtime, "crm.contact.created")[-1]["matched"] is True


def test_a_match_with_nothing_to_fill_leaves_the_contact_unchanged(runtime):
    existing = service.create_contact(runtime.uow(), {"email": "ann@example.com", "first_name": "Ann"})
    contact, matched = service.create_or_match_contact(runtime.uow(), _lead(first_name="Annie"))
    assert matched and contact.version == existing.version == 1
    assert _events(runtime, "crm.contact.updated") == []


def test_a_second_contact_with_the_same_normalised_email_is_refused(runtime):
    first = service.create_contact(runtime.uow(), {"email": "ann@example.com"})
    with pytest.raises(Conflict) as caught:
        service.create_contact(runtime.uow(), {"email": " ANN@example.com"})
    assert caught.value.extra == {"existing_contact_id": str(first.id)}
    assert len(_contacts(runtime)) == 1 and len(_events(runtime, "crm.contact.created")) == 1


def test_a_contact_created_inside_a_failed_outer_unit_of_work_is_not_kept(runtime):
    # An event handler's outer unit of work owns the transaction: if it fails after the use case ran,
    # the contact and its event must go too (SQLite used to commit on the savepoint's release).
    uow = runtime.uow()
    with pytest.raises(RuntimeError), uow:
        service.create_contact(uow, {"email": "ann@example.com"})
        raise RuntimeError("the handler failed afterwards")
    assert _contacts(runtime) == []
    assert _events(runtime, "crm.contact.created") == []


def test_updating_changes_the_given_fields_and_bumps_the_version(runtime):
    contact = service.create_contact(runtime.uow(), {"email": "ann@example.com", "company": "Acme"})
    updated = service.update_contact(runtime.uow(), contact.id, {"email": "Ann.Lee@Example.com", "company": None})
    assert (updated.email, updated.email_normalized, updated.company, updated.version) == \
        ("Ann.Lee@Example.com", "ann.lee@example.com", None, 2)
    assert _events(runtime, "crm.contact.updated") == [
        {"contact_id": str(contact.id), "changed": ["company", "email"], "version": 2}]


def test_an_update_that_changes_nothing_keeps_the_version_and_publishes_nothing(runtime):
    contact = service.create_contact(runtime.uow(), {"email": "ann@example.com", "company": "Acme"})
    same = service.update_contact(runtime.uow(), contact.id, {"company": "Acme"})
    assert same.version == 1 and _events(runtime, "crm.contact.updated") == []


def test_an_update_to_an_email_another_contact_holds_is_refused(runtime):
    ann = service.create_contact(runtime.uow(), {"email": "ann@example.com"})
    bob = service.create_contact(runtime.uow(), {"email": "bob@example.com"})
    with pytest.raises(Conflict) as caught:
        service.update_contact(runtime.uow(), bob.id, {"email": "ANN@example.com"})
    assert caught.value.extra == {"existing_contact_id": str(ann.id)}
    assert service.get_contact(runtime.uow(), bob.id).email == "bob@example.com"


def test_an_update_against_a_stale_version_is_refused(runtime):
    contact = service.create_contact(runtime.uow(), {"email": "ann@example.com"})
    service.update_contact(runtime.uow(), contact.id, {"company": "Acme"}, precondition=Precondition.of(1))
    with pytest.raises(PreconditionFailed):
        service.update_contact(runtime.uow(), contact.id, {"company": "Other"}, precondition=Precondition.of(1))
    assert service.get_contact(runtime.uow(), contact.id).company == "Acme"


def test_an_unknown_contact_is_not_found(runtime):
    with pytest.raises(NotFound):
        service.get_contact(runtime.uow(), uuid.uuid4())
    with pytest.raises(NotFound):
        service.update_contact(runtime.uow(), uuid.uuid4(), {"company": "Acme"})


def test_search_treats_wildcards_in_the_term_literally(runtime):
    service.create_contact(runtime.uow(), {"email": "ann@example.com", "company": "100% Juice"})
    service.create_contact(runtime.uow(), {"email": "bob@example.com", "company": "1000 Bikes"})
    page = service.list_contacts(runtime.uow(), q="0%", limit=10, cursor=None)
    assert [c.email for c in page["items"]] == ["ann@example.com"]
    with runtime.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(Contact)) == 2
