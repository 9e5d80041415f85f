"""`crm contacts import FILE`: the worker's chunked import, run in-process against the contacts database."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from crm.cli import cli
from crm.registry import SUITE
from services.common.settings import from_env
from services.contacts.app import build
from services.contacts.models import Contact, ContactImport, OutboxMessage

pytestmark = pytest.mark.integration


@pytest.fixture
def contacts_database(make_database):
    url = make_database("contacts")
    SUITE.migrate("contacts", url)
    return url


@pytest.fixture
def run(contacts_database):
    def invoke(*args: str):
        # Only the database: the command neither serves nor publishes (the worker's relay publishes its events).
        return CliRunner().invoke(cli, ["contacts", "import", *args],
                                  env={"CONTACTS_DATABASE_URL": contacts_database, "DATABASE_URL": None})
    return invoke


@pytest.fixture
def read(contacts_database):
    runtime = build(from_env("contacts", {"CONTACTS_DATABASE_URL": contacts_database}, require_secret=False))
    yield runtime
    runtime.engine.dispose()


def test_a_file_is_imported_in_chunks_and_the_first_refused_values_are_printed(run, read, tmp_path):
    path = tmp_path / "people.csv"
    rows = [f"person{i}@example.com,Person {i},Acme" for i in range(12_000)]
    rows[10] = "not-an-address,Nobody,Acme"
    rows[11_000] = "person5@EXAMPLE.com,Again,Acme"
    path.write_text("Mail,Name,Org\n" + "\n".join(rows) + "\n", encoding="utf-8")
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps({"Mail": "email", "Org": "company"}))

    result = run(str(path), "--map-file", str(mapping), "--map", "Name=first_name")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].endswith(": completed: 12000 rows, 11998 created, 0 updated, 0 unchanged, 2 failed")
    assert lines[1:] == [
        "  row 12, email: Not a valid email address.",
        "  row 11002, email: Row 7 has the same e-mail address; each address may appear once per file."]
    with read.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(Contact)) == 11_998
        assert s.scalar(select(func.count()).select_from(OutboxMessage)) == 11_998
        assert s.scalar(select(Contact.first_name).where(Contact.email == "person42@example.com")) == "Person 42"
        assert s.scalar(select(ContactImport.requested_by)) == "cli"


def test_a_mapping_that_does_not_fit_the_file_is_refused_naming_the_column(run, read, tmp_path):
    path = tmp_path / "people.csv"
    path.write_text("Mail,Name\nann@example.com,Ann\n", encoding="utf-8")
    result = run(str(path), "--map", "E-mail=email", "--map", "Name=nickname")
    assert result.exit_code == 1
    assert "mapping.E-mail: Not a column of the file's header row." in result.stderr
    assert "mapping.Name: Unknown contact field 'nickname'" in result.stderr
    assert run(str(path), "--map", "no-equals-sign").exit_code == 2  # a usage error, before anything is read
    with read.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(ContactImport)) == 0
