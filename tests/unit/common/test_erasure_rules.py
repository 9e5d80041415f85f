"""Erasure's shared rules: every table is on its service's one list, messages are found by whole JSON strings,
and the services that must confirm come from the registry's bindings."""
from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    Table,
    Text,
    create_engine,
    insert,
    select,
)

from crm.registry import SUITE
from services.common.consumer import handler_name, handles_batches, is_batch_handler
from services.common.erasure import (
    MESSAGE_TABLES,
    People,
    confirming_services,
    containing,
    naming,
    unknown_tables,
    unlisted_tables,
)
from services.contacts import erasure as contacts_erasure
from services.contacts import models as contacts_models
from services.leads import erasure as leads_erasure
from services.leads import models as leads_models
from services.loyalty import erasure as loyalty_erasure
from services.loyalty import models as loyalty_models

LISTS = {
    "contacts": (contacts_erasure, contacts_models.Base.metadata),
    "leads": (leads_erasure, leads_models.Base.metadata),
    "loyalty": (loyalty_erasure, loyalty_models.Base.metadata),
}


@pytest.mark.parametrize("service", sorted(LISTS))
def test_every_table_of_a_service_is_erased_or_kept_for_a_stated_reason(service):
    module, metadata = LISTS[service]
    assert unlisted_tables(metadata, module.STEPS, module.KEPT) == set(), (
        f"services/{service}/erasure.py: add each new table to STEPS (how the person's rows go) or to KEPT "
        f"(why it holds nothing that identifies them)")
    assert unknown_tables(metadata, module.STEPS, module.KEPT) == set(), "a listed table does not exist"
    assert all(module.KEPT.values()) and all(step.why for step in module.STEPS)
    assert not {step.table for step in module.STEPS} & set(module.KEPT), "a table is both erased and kept"


@pytest.mark.parametrize("service", sorted(LISTS))
def test_a_table_that_names_a_contact_is_never_left_off_the_list(service):
    module, metadata = LISTS[service]
    listed = {step.table for step in module.STEPS} | set(module.KEPT) | MESSAGE_TABLES
    naming_contacts = {name for name, table in metadata.tables.items() if "contact_id" in table.c}
    assert naming_contacts <= listed


def test_a_new_table_is_reported_until_it_is_listed():
    module, metadata = LISTS["contacts"]
    extended = MetaData()
    for table in metadata.tables.values():
        table.to_metadata(extended)
    Table("contact_notes", extended, Column("seq", Integer, primary_key=True), Column("contact_id", Text))
    assert unlisted_tables(extended, module.STEPS, module.KEPT) == {"contact_notes"}


def test_the_services_that_confirm_are_those_bound_to_contact_erased():
    assert confirming_services({"a": ["crm.x"], "b": ("crm.contact.erased", "crm.y"), "c": ["crm.contact.erased"]}) \
        == ("b", "c")
    expected = tuple(sorted(name for name, types in SUITE.bindings().items() if "crm.contact.erased" in types))
    assert confirming_services(SUITE.bindings()) == expected
    assert {"contacts", "leads", "loyalty"} <= set(expected)


def test_contacts_erasure_handlers_are_told_the_confirmers_and_keep_their_inbox_name():
    seen = []

    @handles_batches
    def on_erased(uow, events, *, confirmers):
        seen.append(confirmers)

    def on_other(uow, event):
        pass

    bound = contacts_erasure.with_confirmers(
        {"crm.contact.erased": on_erased, "crm.lead.created": on_other},
        {"contacts": ["crm.contact.erased"], "leads": ["crm.contact.erased"], "partners": ["crm.contract.created"]})
    assert bound["crm.lead.created"] is on_other
    handler = bound["crm.contact.erased"]
    assert handler_name(handler) == handler_name(on_erased) and is_batch_handler(handler)
    handler(None, [])
    assert seen == [("contacts", "leads")]


def test_people_are_known_by_their_ids_and_every_spelling_of_their_address():
    contact, lead = uuid.uuid4(), uuid.uuid4()
    people = People.of([{"contact_id": contact, "lead_ids": [lead], "email": "Ann.Lee@ＥXAMPLE.com"}])
    assert people.needles() == {str(contact), str(lead), "Ann.Lee@ＥXAMPLE.com", "ann.lee@example.com"}
    assert People.of([{"contact_id": contact, "email": None}]).needles() == {str(contact)}


@pytest.fixture
def payloads():
    engine = create_engine("sqlite://")
    table = Table("messages", MetaData(), Column("id", Integer, primary_key=True), Column("payload", Text))
    table.create(engine)
    rows = {
        1: {"email": "a_b@example.com"},
        2: {"email": "xa_b@example.com"},  # contains the address, but is another one
        3: {"email": "A_B@EXAMPLE.COM"},
        4: {"email": "aXb@example.com"},  # `_` must not act as a wildcard
        5: {"name": "Zoë", "email": "zoë@example.com"},  # stored with \u escapes
        6: {"note": "50% off for a_b"},
    }
    with engine.begin() as conn:
        conn.execute(insert(table), [{"id": i, "payload": json.dumps(data)} for i, data in rows.items()])

    def matching(condition) -> set[int]:
        with engine.connect() as conn:
            return set(conn.scalars(select(table.c.id).where(condition(table.c.payload))))

    return matching


def test_a_message_names_a_person_only_by_a_whole_json_string_in_any_case(payloads):
    assert payloads(lambda column: naming(column, {"a_b@example.com"})) == {1, 3}
    assert payloads(lambda column: naming(column, {"zoë@example.com"})) == {5}
    assert payloads(lambda column: naming(column, set())) == set()


def test_free_text_is_searched_for_the_text_anywhere_with_percent_and_underscore_literal(payloads):
    assert payloads(lambda column: containing(column, {"50%"})) == {6}
    assert payloads(lambda column: containing(column, {"a_b@"})) == {1, 2, 3}
