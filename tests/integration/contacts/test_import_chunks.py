"""One chunk of import rows on the real PostgreSQL: what is locked, what is compared, the events' JSON, failures."""
from __future__ import annotations

import json
import threading
import uuid

import psycopg
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError

from services.common.catalog import make_event
from services.contacts import import_rows
from services.contacts.import_chunks import apply_rows
from services.contacts.import_jobs import ImportRunner
from services.contacts.models import Contact, ContactImport, OutboxMessage
from tests.support.suite import wait_until

pytestmark = pytest.mark.integration


def _row(address: str, **values) -> dict:
    return {"row": 2, "email": address, "email_normalized": address.lower(), **values}


def _add_contact(runtime, address: str, **values) -> None:
    with runtime.session_factory() as s, s.begin():
        s.add(Contact(id=uuid.uuid4(), email=address, email_normalized=address.lower(), tags=[], attributes={},
                      consents={}, **values))


def _waiting_for_a_lock(runtime) -> bool:
    with runtime.engine.connect() as conn:
        return conn.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                "AND wait_event_type = 'Lock'")) > 0


def _locked(runtime, address: str):
    """A session holding the contact's row lock (as a concurrent writer would), and the contact."""
    other = runtime.session_factory()
    contact = other.scalar(select(Contact).where(Contact.email_normalized == address).with_for_update())
    return other, contact


def test_a_row_that_changes_nothing_takes_no_lock_and_one_that_changes_waits_for_it(runtime, store):
    _add_contact(runtime, "ann@example.com", company="Acme")
    other, _contact = _locked(runtime, "ann@example.com")
    try:
        with runtime.uow() as uow:
            uow.session.execute(text("SET LOCAL lock_timeout = '2s'"))  # waiting for the lock fails the test
            outcome = apply_rows(uow, [_row("ann@example.com", company="Acme")])
            uow.commit()
        assert (outcome.created, outcome.updated, outcome.unchanged) == (0, 0, 1)
        with pytest.raises((OperationalError, psycopg.errors.LockNotAvailable)), runtime.uow() as uow:
            uow.session.execute(text("SET LOCAL lock_timeout = '200ms'"))
            apply_rows(uow, [_row("ann@example.com", company="Other")])
    finally:
        other.rollback()
        other.close()
    assert store.events() == []


@pytest.mark.parametrize("meanwhile, expected", [
    # The writer changed another field: the import's change still applies, on top of the committed version.
    ({"first_name": "Anna"}, ("Anna", "Imported", 3, 1, 0)),
    # The writer already set what the row holds: once locked, the contact is unchanged.
    ({"company": "Imported"}, (None, "Imported", 2, 0, 1)),
])
def test_a_contact_changed_while_the_import_waits_for_its_lock_is_compared_again_as_committed(
        runtime, store, meanwhile, expected):
    _add_contact(runtime, "ann@example.com", company="Old")
    other, contact = _locked(runtime, "ann@example.com")
    for name, value in meanwhile.items():
        setattr(contact, name, value)
    contact.version = 2
    other.flush()
    outcome, called = {}, []

    def apply():
        with runtime.uow() as uow:
            outcome["chunk"] = apply_rows(uow, [_row("ann@example.com", company="Imported")],
                                          meanwhile=lambda: called.append(True))
            uow.commit()

    thread = threading.Thread(target=apply)
    thread.start()
    try:
        wait_until(lambda: _waiting_for_a_lock(runtime), timeout=30, message="the import to wait for the writer")
    finally:
        other.commit()
        other.close()
    thread.join(30)
    chunk = outcome["chunk"]
    [ann] = store.contacts()
    assert (ann.first_name, ann.company, ann.version, chunk.updated, chunk.unchanged) == expected
    assert called == [True]
    updates = store.events("crm.contact.updated")
    assert [e["data"] for e in updates] == ([{"contact_id": str(ann.id), "changed": ["company"], "version": 3}]
                                            if chunk.updated else [])


def test_the_events_json_put_together_in_sql_is_what_add_event_writes(runtime, store):
    # JSON's special characters in the address (a quoted local part) and in the correlation id; a non-ASCII address.
    addresses = ['"a\\"b\\\\c"@example.com', "jörg@bücher.example", "ann@example.com"]
    with runtime.uow(correlation_id='req "1" \\ ü') as uow:
        created = apply_rows(uow, [_row(address, first_name="F") for address in addresses])
        uow.commit()
    with runtime.uow(correlation_id=None) as uow:
        updated = apply_rows(uow, [_row("ann@example.com", first_name="G", tags=["vip"])])
        uow.commit()
    assert (created.created, updated.updated) == (3, 1)
    with runtime.session_factory() as s:
        stored = list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.seq)))
        ids = dict(s.execute(select(Contact.email, Contact.id)).all())
    expected = {(ids[address], "crm.contact.created"): ({"contact_id": ids[address], "email": address, "lead_id": None,
                                                         "matched": False}, 'req "1" \\ ü')
                for address in addresses}
    expected[ids["ann@example.com"], "crm.contact.updated"] = (
        {"contact_id": ids["ann@example.com"], "changed": ["first_name", "tags"], "version": 2}, None)
    assert sorted((uuid.UUID(json.loads(row.payload)["subject"]), row.event_type) for row in stored) == sorted(expected)
    for row in stored:
        written = json.loads(row.payload)
        data, correlation = expected[uuid.UUID(written["subject"]), row.event_type]
        reference = json.loads(make_event(row.event_type, data, source="/services/contacts",
                                          subject=data["contact_id"], correlationid=correlation).to_json())
        reference.update(id=str(row.event_id), time=written["time"])
        assert list(written.items()) == list(reference.items())  # the same fields, in the same order


def test_a_failing_statement_writes_nothing_and_leaves_the_connection_usable(runtime, store):
    called = []
    # Past the validators (first_name holds at most 100 characters): the database refuses the chunk.
    with pytest.raises(psycopg.errors.StringDataRightTruncation), runtime.uow() as uow:
        apply_rows(uow, [_row("ann@example.com", first_name="x" * 101), _row("bob@example.com")],
                   meanwhile=lambda: called.append(True))
    assert called == [True]
    with runtime.uow() as uow:
        outcome = apply_rows(uow, [_row("ann@example.com", first_name="Ann")], meanwhile=lambda: called.append(True))
        uow.commit()
    assert outcome.created == 1 and called == [True, True]
    with runtime.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(OutboxMessage)) == 1
    assert [c.email for c in store.contacts()] == ["ann@example.com"]


def test_a_chunk_that_cannot_be_read_stops_the_import_after_the_chunk_before_it_commits(runtime, monkeypatch):
    runner = ImportRunner(runtime, chunk_rows=2)
    submitted = runner.submit(b"E-mail\na@example.com\nb@example.com\nc@example.com\nd@example.com\n",
                              {"E-mail": "email"}, requested_by="test")
    check_chunk, calls = import_rows.check_chunk, []

    def second_fails(*args):
        calls.append(True)
        if len(calls) == 2:  # read while the first chunk is written
            raise RuntimeError("unreadable")
        return check_chunk(*args)

    monkeypatch.setattr(import_rows, "check_chunk", second_fails)
    with pytest.raises(RuntimeError, match="unreadable"):
        runner.run_import(submitted.id)
    with runtime.session_factory() as s:
        held = s.scalar(select(ContactImport).where(ContactImport.id == submitted.id))
        assert (held.processed, held.created) == (2, 2)
        assert s.scalar(select(func.count()).select_from(Contact)) == 2
