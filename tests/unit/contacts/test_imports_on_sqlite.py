"""An import applied on SQLite (the ORM path of import_chunks.py): the same outcomes as on PostgreSQL."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from services.common.runtime import build_runtime
from services.common.settings import Settings
from services.contacts import imports
from services.contacts.import_jobs import ImportRunner
from services.contacts.models import Base, Contact, ContactImportError, ContactImportFile, InboxEntry, OutboxMessage

FILE = ("E-mail,First,Company,Tags\n"
        "ann@example.com,Ann,Acme,vip\n"
        "bob@example.com,Bob,,\n"
        "bad-address,Carl,,\n")
MAPPING = {"E-mail": "email", "First": "first_name", "Company": "company", "Tags": "tags"}


@pytest.fixture
def runtime():
    rt = build_runtime(Settings(service="contacts", database_url="sqlite:///:memory:"), OutboxMessage, InboxEntry)
    Base.metadata.create_all(rt.engine)
    yield rt
    rt.engine.dispose()


def _import(runtime, text: str, mapping=MAPPING, **runner_options):
    runner = ImportRunner(runtime, **runner_options)
    submitted = imports.submit_import(runtime.uow(), text.encode(), mapping, requested_by="test")
    assert runner.claim() == submitted.id
    assert runner.run_import(submitted.id) == imports.COMPLETED
    return imports.get_import(runtime.uow(read_only=True), submitted.id)


def _events(runtime) -> list[tuple[str, dict]]:
    with runtime.session_factory() as s:
        return [(row.event_type, json.loads(row.payload)["data"])
                for row in s.scalars(select(OutboxMessage).order_by(OutboxMessage.seq))]


def test_an_import_creates_updates_and_leaves_alone_by_address(runtime):
    first = _import(runtime, FILE, chunk_rows=2)
    assert (first.total_rows, first.processed, first.created, first.updated, first.unchanged, first.failed) == \
        (3, 3, 2, 0, 0, 1)
    with runtime.session_factory() as s:
        [error] = s.scalars(select(ContactImportError))
        assert (error.row, error.field, error.message) == (4, "email", "Not a valid email address.")
        assert s.scalar(select(ContactImportFile)) is None  # the file goes once the import has ended
    # Ann's empty first-name cell keeps her name, her tags are added to; Bob's row matches him as he is.
    second = _import(runtime, "E-mail,First,Company,Tags\nANN@example.com,,Acme Corp,b2b\nbob@example.com,Bob,,\n")
    assert (second.created, second.updated, second.unchanged, second.failed) == (0, 1, 1, 0)
    with runtime.session_factory() as s:
        ann = s.scalar(select(Contact).where(Contact.email_normalized == "ann@example.com"))
    assert (ann.email, ann.first_name, ann.company, ann.tags, ann.version) == \
        ("ann@example.com", "Ann", "Acme Corp", ["b2b", "vip"], 2)
    events = _events(runtime)
    assert [kind for kind, _data in events] == ["crm.contact.created"] * 2 + ["crm.contact.updated"]
    assert events[0][1] == {"contact_id": str(events[0][1]["contact_id"]), "email": "ann@example.com",
                            "lead_id": None, "matched": False}
    assert events[2][1] == {"contact_id": str(ann.id), "changed": ["company", "tags"], "version": 2}


def test_the_same_file_twice_changes_nothing(runtime):
    _import(runtime, FILE)
    again = _import(runtime, FILE)
    assert (again.created, again.updated, again.unchanged, again.failed) == (0, 0, 2, 1)
    assert len(_events(runtime)) == 2
    with runtime.session_factory() as s:
        assert [c.version for c in s.scalars(select(Contact))] == [1, 1]


def test_an_import_interrupted_on_the_command_line_is_failed_and_keeps_what_it_applied(runtime):
    runner = ImportRunner(runtime, chunk_rows=1)
    submitted = runner.submit(FILE.encode(), MAPPING, requested_by="cli")
    assert submitted.status == imports.RUNNING and runner.claim() is None  # held by this runner, not the workers

    def ctrl_c(_state):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.run_here(submitted.id, on_chunk=ctrl_c)
    ended = imports.get_import(runtime.uow(read_only=True), submitted.id)
    assert (ended.status, ended.processed, ended.created) == ("failed", 1, 1)
    assert ended.error.startswith("Interrupted from the command line")
    with runtime.session_factory() as s:
        assert s.scalar(select(ContactImportFile)) is None
