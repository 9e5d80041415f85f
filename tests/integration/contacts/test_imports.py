"""CSV imports on the real PostgreSQL: submitted through the API, applied by the worker's import job."""
from __future__ import annotations

import base64
import json
import threading
import uuid

import pytest
from sqlalchemy import func, select, text

from services.common.catalog import make_event, parse_event
from services.contacts import accounts, imports
from services.contacts.import_chunks import apply_rows
from services.contacts.import_jobs import ImportJob, ImportRunner, LeaseLost
from services.contacts.models import AttributeDefinition, Contact, ContactImport, ContactImportFile
from tests.support.auth import identity_headers

pytestmark = pytest.mark.integration

BASE = "/api/v1/contacts/imports"
IMPORTER = identity_headers("contacts:import")
MAPPING = {"E-mail": "email", "First name": "first_name", "Last name": "last_name", "Company": "company",
           "Phone": "phone"}
HEADER = "E-mail,First name,Last name,Company,Phone\n"


def _body(data: str | bytes, mapping=MAPPING) -> dict:
    raw = data.encode() if isinstance(data, str) else data
    return {"file": base64.b64encode(raw).decode(), "mapping": mapping}


def _submit(client, data, mapping=MAPPING, headers=IMPORTER) -> dict:
    response = client.post(BASE, json=_body(data, mapping), headers=headers)
    assert response.status_code == 202, response.get_data(as_text=True)
    assert response.headers["Location"] == f"{BASE}/{response.json['id']}"
    return response.json


def _run_job(runtime, **options) -> None:
    """What the worker's import job does between polls: run every waiting import to its end."""
    job = ImportJob(runtime, **options)
    while job.run_once():
        pass


def _read(client, import_id) -> dict:
    response = client.get(f"{BASE}/{import_id}", headers=IMPORTER)
    assert response.status_code == 200
    return response.json


def _counts(body: dict) -> tuple:
    return tuple(body[name] for name in ("status", "processed", "created", "updated", "unchanged", "failed"))


def _contact(store, email_normalized: str) -> Contact | None:
    with store.runtime.session_factory() as s:
        return s.scalar(select(Contact).where(Contact.email_normalized == email_normalized))


def _rows(n: int, start: int = 0, **columns) -> str:
    """A file of `n` rows e<i>@bulk.example with the given column -> value pattern (`{i}` filled in)."""
    names = list(columns)
    lines = [",".join(["E-mail", *names])]
    lines += [",".join([f"e{i}@bulk.example", *(columns[name].format(i=i) for name in names)])
              for i in range(start, start + n)]
    return "\n".join(lines) + "\n"


# -- what an import does --------------------------------------------------------------------------------------

def test_an_import_creates_updates_and_leaves_alone_and_reports_each_refused_value(client, rw_headers, runtime,
                                                                                   store):
    for body in ({"email": "ann@example.com", "first_name": "Ann", "company": "Old Co"},
                 {"email": "bob@example.com", "first_name": "Bob"}):
        assert client.post("/api/v1/contacts", json=body, headers=rw_headers).status_code == 201
    before = len(store.events())
    data = HEADER + (
        "ann@example.com,,Lee,New Co,\n"          # row 2: updated; the empty first name keeps Ann
        "BOB@Example.com,Bob,,,\n"                # row 3: unchanged
        "carl@example.com,Carl,,,+1 555 0100\n"   # row 4: created
        "not-an-address,X,,,\n"                   # row 5: refused (email)
        "dora@example.com,Dora,,,call me\n"       # row 6: refused (phone)
        "carl@EXAMPLE.com,Carl,,,\n"              # row 7: refused (row 4 had the address)
        f"eve@example.com,{'x' * 101},,,\n")      # row 8: refused (first_name too long)
    response = client.post(BASE, json=_body(data), headers={**IMPORTER, "X-Request-ID": "import-run-1"})
    assert response.status_code == 202
    submitted = response.json
    assert _counts(submitted) == ("pending", 0, 0, 0, 0, 0)
    assert (submitted["total_rows"], submitted["progress"], submitted["mapping"]) == (7, 0.0, MAPPING)

    _run_job(runtime)

    done = _read(client, submitted["id"])
    assert _counts(done) == ("completed", 7, 1, 1, 1, 4)
    assert done["progress"] == 100.0 and done["error"] is None
    assert done["started_at"] and done["finished_at"] >= done["started_at"]
    first = client.get(f"{BASE}/{submitted['id']}/errors?limit=2", headers=IMPORTER).json
    rest = client.get(f"{BASE}/{submitted['id']}/errors?limit=2&cursor={first['next_cursor']}", headers=IMPORTER).json
    assert rest["next_cursor"] is None
    assert [(e["row"], e["field"], e["message"]) for e in first["items"] + rest["items"]] == [
        (5, "email", "Not a valid email address."),
        (6, "phone", "Not a phone number."),
        (7, "email", "Row 4 has the same e-mail address; each address may appear once per file."),
        (8, "first_name", "Length must be between 1 and 100."),
    ]
    ann = _contact(store, "ann@example.com")
    assert (ann.first_name, ann.last_name, ann.company, ann.version) == ("Ann", "Lee", "New Co", 2)
    assert _contact(store, "bob@example.com").version == 1
    carl = _contact(store, "carl@example.com")
    assert (carl.first_name, carl.phone, carl.version, carl.tags, carl.attributes) == ("Carl", "+1 555 0100", 1, [], {})
    assert _contact(store, "dora@example.com") is None

    # One event per change, in the outbox as the consumers will read them, correlated with the request.
    events = store.events()[before:]
    assert sorted((e["type"], e["subject"]) for e in events) == sorted(
        [("crm.contact.created", str(carl.id)), ("crm.contact.updated", str(ann.id))])
    by_type = {e["type"]: e for e in events}
    assert by_type["crm.contact.created"]["data"] == {"contact_id": str(carl.id), "email": "carl@example.com",
                                                      "lead_id": None, "matched": False}
    assert by_type["crm.contact.updated"]["data"] == {"contact_id": str(ann.id), "changed": ["company", "last_name"],
                                                      "version": 2}
    reference = json.loads(make_event("crm.contact.updated", by_type["crm.contact.updated"]["data"],
                                      source="/services/contacts", subject=ann.id).to_json())
    for event in events:
        assert event.keys() == reference.keys()
        assert (event["source"], event["correlationid"], event["causationid"]) == \
            ("/services/contacts", "import-run-1", None)
        assert parse_event(json.dumps(event)).type == event["type"]  # what a consumer validates
    listed = client.get(BASE, headers=IMPORTER).json
    assert [item["id"] for item in listed["items"]] == [submitted["id"]] and listed["next_cursor"] is None
    with runtime.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(ContactImportFile)) == 0  # no copy of the file is kept


def test_the_same_file_twice_changes_nothing(client, runtime, store):
    data = _rows(30, first_name="F{i}", company="C{i}")
    mapping = {"E-mail": "email", "first_name": "first_name", "company": "company"}
    first = _submit(client, data, mapping)
    _run_job(runtime, chunk_rows=7)
    events = len(store.events())
    second = _submit(client, data, mapping)
    _run_job(runtime, chunk_rows=7)
    assert _counts(_read(client, first["id"])) == ("completed", 30, 30, 0, 0, 0)
    assert _counts(_read(client, second["id"])) == ("completed", 30, 0, 0, 30, 0)
    assert len(store.events()) == events == 30
    assert {c.version for c in store.contacts()} == {1}


def test_tags_attributes_and_the_account_by_domain(client, runtime, store):
    with runtime.uow() as uow:
        uow.session.add(AttributeDefinition(name="tier", type="enum", label="Tier", options=["gold", "silver"]))
        uow.commit()
    account = accounts.create_account(runtime.uow(), {"name": "Acme", "domain": "acme.example"})
    mapping = {"E-mail": "email", "Tags": "tags", "Tier": "attributes.tier"}
    _submit(client, "E-mail,Tags,Tier\ncrowded@other.example," + ";".join(f"t{i:03}" for i in range(100)) + ",\n",
            mapping)
    _run_job(runtime)
    data = ("E-mail,Tags,Tier\n"
            "ann@acme.example,VIP; b2b,gold\n"       # created: tags, attribute, the account of acme.example
            "bob@acme.example,,platinum\n"           # refused: not an option
            "crowded@other.example,one-more,\n")     # refused: a 101st tag
    submitted = _submit(client, data, mapping)
    _run_job(runtime)
    assert _counts(_read(client, submitted["id"])) == ("completed", 3, 1, 0, 0, 2)
    errors = client.get(f"{BASE}/{submitted['id']}/errors", headers=IMPORTER).json["items"]
    assert [(e["row"], e["field"], e["message"]) for e in errors] == [
        (3, "attributes.tier", "Must be one of: gold, silver."),
        (4, "tags", "The contact would have more than 100 tags."),
    ]
    ann = _contact(store, "ann@acme.example")
    assert (ann.tags, ann.attributes, ann.account_id) == (["b2b", "vip"], {"tier": "gold"}, account.id)
    assert len(_contact(store, "crowded@other.example").tags) == 100


def test_the_same_key_replays_the_submission(client, runtime):
    headers = {**IMPORTER, "Idempotency-Key": "import-once"}
    first = client.post(BASE, json=_body(HEADER + "ann@example.com,Ann,,,\n"), headers=headers)
    again = client.post(BASE, json=_body(HEADER + "ann@example.com,Ann,,,\n"), headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true" and again.json["id"] == first.json["id"]
    with runtime.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(ContactImport)) == 1


# -- refused up front -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("body, field", [
    (_body("E-mail\nbjörn@example.com\n".encode("latin-1"), {"E-mail": "email"}), "file"),
    (_body("", {"E-mail": "email"}), "file"),
    (_body("E-mail\nann@example.com\n", {"Mail": "email"}), "mapping"),
    (_body("E-mail\nann@example.com\n", {"E-mail": "email", "x": "nickname"}), "mapping"),
    (_body("E-mail,Name\nann@example.com,Ann\n", {"Name": "first_name"}), "mapping"),
    (_body("E-mail,Tier\nann@example.com,gold\n", {"E-mail": "email", "Tier": "attributes.tier"}), "mapping"),
    ({"file": "not base64!", "mapping": {"E-mail": "email"}}, "file"),
    ({"mapping": {"E-mail": "email"}}, "file"),
    ({**_body("E-mail\na@b.example\n", {"E-mail": "email"}), "dry_run": True}, "dry_run"),
])
def test_a_file_or_mapping_that_cannot_be_imported_is_a_422_naming_the_field(client, runtime, body, field):
    response = client.post(BASE, json=body, headers=IMPORTER)
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    assert field in response.json["errors"]
    with runtime.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(ContactImport)) == 0


def test_too_many_rows_and_too_large_a_body_are_refused(client, monkeypatch):
    monkeypatch.setattr(imports, "MAX_ROWS", 3)
    response = client.post(BASE, json=_body(_rows(4), {"E-mail": "email"}), headers=IMPORTER)
    assert response.status_code == 422 and "more than 3 data rows" in response.json["errors"]["file"][0]
    # Beyond the request limit (1 MiB): refused before anything is read (413); `crm contacts import` takes more.
    response = client.post(BASE, json=_body("x" * (1 << 20), {"E-mail": "email"}), headers=IMPORTER)
    assert response.status_code == 413 and response.mimetype == "application/problem+json"


def test_only_a_key_with_contacts_import_may_submit_or_read_imports(client):
    some_id = uuid.uuid4()
    for headers in (identity_headers("contacts:*"), identity_headers("contacts:read", "contacts:write"),
                    identity_headers("contacts:export")):
        for response in (client.post(BASE, json=_body(HEADER), headers=headers), client.get(BASE, headers=headers),
                         client.get(f"{BASE}/{some_id}", headers=headers),
                         client.get(f"{BASE}/{some_id}/errors", headers=headers)):
            assert response.status_code == 403, response.get_data(as_text=True)
    assert client.get(f"{BASE}/{some_id}", headers=IMPORTER).status_code == 404
    assert client.get(f"{BASE}/{some_id}/errors", headers=IMPORTER).status_code == 404
    assert client.get(BASE, headers=identity_headers("admin")).status_code == 200


# -- workers ----------------------------------------------------------------------------------------------------

def test_two_imports_with_overlapping_addresses_at_once_lose_nothing_and_duplicate_nobody(client, runtime, store):
    first = _submit(client, _rows(600, first_name="A{i}"), {"E-mail": "email", "first_name": "first_name"})
    # The second file overlaps the first by 300 addresses and runs through them in the opposite order.
    lines = _rows(600, start=300, company="B{i}").splitlines()
    second = _submit(client, "\n".join([lines[0], *reversed(lines[1:])]) + "\n",
                     {"E-mail": "email", "company": "company"})
    runners = [ImportRunner(runtime, chunk_rows=50) for _ in range(2)]
    claimed = [runner.claim() for runner in runners]
    assert sorted(map(str, claimed)) == sorted([first["id"], second["id"]])
    start, failures = threading.Barrier(2), []

    def run(runner, import_id):
        start.wait()
        try:
            runner.run_import(import_id)
        except Exception as exc:  # noqa: BLE001 - reported below (a deadlock would land here)
            failures.append(exc)

    threads = [threading.Thread(target=run, args=pair) for pair in zip(runners, claimed)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == []
    results = [_read(client, item["id"]) for item in (first, second)]
    assert [r["status"] for r in results] == ["completed", "completed"]
    assert sum(r["created"] for r in results) == 900 and sum(r["updated"] for r in results) == 300
    assert store.contact_count() == 900
    for i in (0, 300, 450, 599, 899):
        contact = _contact(store, f"e{i}@bulk.example")
        assert (contact.first_name, contact.company) == (f"A{i}" if i < 600 else None, f"B{i}" if i >= 300 else None)
    created = [e["data"]["contact_id"] for e in store.events("crm.contact.created")]
    assert len(created) == len(set(created)) == 900


def test_an_address_another_writer_creates_meanwhile_is_updated_not_created_twice(runtime, store):
    from tests.support.suite import wait_until

    other = runtime.session_factory()  # e.g. a lead conversion, not yet committed
    other.add(Contact(id=uuid.uuid4(), email="x@example.com", email_normalized="x@example.com", first_name="Xena",
                      tags=[], attributes={}, consents={}))
    other.flush()
    outcome = {}

    def apply():
        with runtime.uow() as uow:
            row = {"row": 2, "email": "X@example.com", "email_normalized": "x@example.com", "company": "Imported"}
            outcome["chunk"] = apply_rows(uow, [row])
            uow.commit()

    thread = threading.Thread(target=apply)
    thread.start()
    try:
        # The import's insert waits on the other writer's uncommitted row with the same address.
        wait_until(lambda: _waiting_for_a_lock(runtime), timeout=30, message="the import to wait for the other writer")
    finally:
        other.commit()
        other.close()
    thread.join(30)
    chunk = outcome["chunk"]
    assert (chunk.created, chunk.updated, chunk.unchanged, chunk.created_ids) == (0, 1, 0, [])
    [contact] = store.contacts()
    assert (contact.email, contact.first_name, contact.company, contact.version) == \
        ("x@example.com", "Xena", "Imported", 2)
    assert [e["data"]["changed"] for e in store.events("crm.contact.updated")] == [["company"]]


def _waiting_for_a_lock(runtime) -> bool:
    with runtime.engine.connect() as conn:
        return conn.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                "AND wait_event_type = 'Lock'")) > 0


class Killed(BaseException):
    """The worker process dies (after a chunk committed, before the next one)."""


def test_an_import_killed_between_chunks_resumes_at_its_checkpoint_and_ends_exact(client, runtime, store):
    submitted = _submit(client, _rows(250, first_name="F{i}") + "e3@bulk.example,again\n",
                        {"E-mail": "email", "first_name": "first_name"})
    import_id = uuid.UUID(submitted["id"])
    killed = ImportRunner(runtime, chunk_rows=100)
    assert killed.claim() == import_id

    def die(_state):
        raise Killed

    with pytest.raises(Killed):
        killed.run_import(import_id, on_chunk=die)
    assert _counts(_read(client, submitted["id"])) == ("running", 100, 100, 0, 0, 0)
    assert ImportJob(runtime, chunk_rows=100).run_once() is False  # the lease still holds it
    with runtime.session_factory() as s, s.begin():
        s.execute(text("UPDATE contact_imports SET lease_until = now() - interval '1 second'"))
    successor = ImportRunner(runtime, chunk_rows=100)
    assert successor.claim() == import_id
    with pytest.raises(LeaseLost):  # the old worker, back from the dead, writes nothing
        killed.run_import(import_id)
    assert successor.run_import(import_id) == "completed"
    assert _counts(_read(client, submitted["id"])) == ("completed", 251, 250, 0, 0, 1)
    errors = client.get(f"{BASE}/{submitted['id']}/errors", headers=IMPORTER).json["items"]
    assert [(e["row"], e["message"][:6]) for e in errors] == [(252, "Row 5 ")]  # the resumed run remembers row 5
    assert store.contact_count() == 250
    created = [e["data"]["contact_id"] for e in store.events("crm.contact.created")]
    assert len(created) == len(set(created)) == 250


def test_the_contacts_worker_runs_imports_on_a_thread_of_its_own(client, contacts_settings, amqp_url, store):
    from crm.registry import SUITE
    from tests.support.suite import wait_until

    worker = SUITE.create_worker("contacts", contacts_settings)  # on this test's vhost (it asks for amqp_url)
    worker.start()
    try:
        assert worker.threads_alive()["imports"] is True
        submitted = _submit(client, _rows(20, first_name="W{i}"), {"E-mail": "email", "first_name": "first_name"})
        wait_until(lambda: _read(client, submitted["id"])["status"] == "completed", timeout=30,
                   message="the worker to complete the import")
        assert store.contact_count() == 20
    finally:
        worker.stop()
        worker.runtime.engine.dispose()


def test_the_import_list_filters_by_status_and_sorts_by_size(client, runtime):
    small = _submit(client, HEADER + _rows(1))
    large = _submit(client, HEADER + _rows(5, start=10))
    _run_job(runtime)
    waiting = _submit(client, HEADER + _rows(3, start=20))

    listed = client.get(BASE, headers=IMPORTER, query_string={"sort": "-total_rows"}).json["items"]
    assert [item["id"] for item in listed] == [large["id"], waiting["id"], small["id"]]
    pending = client.get(BASE, headers=IMPORTER, query_string={"status": "pending"}).json["items"]
    assert [item["id"] for item in pending] == [waiting["id"]]
    assert client.get(BASE, headers=IMPORTER, query_string={"sort": "mapping"}).status_code == 422


def test_a_chunk_that_keeps_failing_is_released_for_a_retry_then_fails_the_import(client, runtime, monkeypatch):
    from services.contacts.import_jobs import MAX_CHUNK_ATTEMPTS

    submitted = _submit(client, HEADER + "ann@example.com,Ann,,,\n")
    import_id = uuid.UUID(submitted["id"])
    job = ImportJob(runtime, chunk_rows=100)
    calls = []

    def broken(held_id, **_options):
        calls.append(held_id)
        raise RuntimeError("a chunk that cannot be applied")

    monkeypatch.setattr(job.runner, "run_import", broken)
    for attempt in range(1, MAX_CHUNK_ATTEMPTS):
        assert job.run_once() is True
        with runtime.session_factory() as s:  # released at once: claimable again, by any worker
            held = s.scalar(select(ContactImport).where(ContactImport.id == import_id))
            assert (held.status, held.lease_owner, held.lease_until) == ("running", None, None), attempt
    assert job.run_once() is True
    assert calls == [import_id] * MAX_CHUNK_ATTEMPTS
    body = _read(client, submitted["id"])
    assert body["status"] == "failed"
    with runtime.session_factory() as s:
        assert f"failed {MAX_CHUNK_ATTEMPTS} times (RuntimeError)" in s.scalar(select(ContactImport.error).where(ContactImport.id == import_id))
    assert job.run_once() is False  # nothing left to claim
