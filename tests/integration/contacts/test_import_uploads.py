"""CSV imports sent as multipart/form-data (`curl -F file=@people.csv -F mapping=...`) on the real PostgreSQL: past
the 1 MiB of a JSON body, up to CRM_MAX_UPLOAD_BYTES, with the same checks and the same import as the JSON shape."""
from __future__ import annotations

import io
import json
import uuid

import pytest
from sqlalchemy import func, select

from services.contacts.import_jobs import ImportJob
from services.contacts.models import Contact, ContactImport, ContactImportFile
from tests.support.auth import identity_headers

pytestmark = pytest.mark.integration

BASE = "/api/v1/contacts/imports"
IMPORTER = identity_headers("contacts:import")
MAPPING = {"E-mail": "email", "First name": "first_name", "Company": "company"}
MiB = 1 << 20


def _csv(rows: int, start: int = 0) -> bytes:
    """A file of `rows` people, about 70 bytes a row (15,000 rows are past 1 MiB)."""
    lines = ["E-mail,First name,Company,Notes"]
    lines += [f"person{i}@upload.example,Name{i},Company number {i % 97},not mapped: padding padding {i}"
              for i in range(start, start + rows)]
    return ("\n".join(lines) + "\n").encode()


def _form(data: bytes, mapping=MAPPING, **parts) -> dict:
    """A multipart body's parts: the file as a file part, the mapping as a JSON text field."""
    body = {"file": (io.BytesIO(data), "people.csv", "text/csv"), **parts}
    if mapping is not None:
        body["mapping"] = mapping if isinstance(mapping, (str, tuple)) else json.dumps(mapping)
    return body


def _post(client, form: dict, headers=IMPORTER):
    return client.post(BASE, data=form, content_type="multipart/form-data", headers=headers)


def _imports(runtime) -> int:
    with runtime.session_factory() as s:
        return s.scalar(select(func.count()).select_from(ContactImport))


def _problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/problem+json"
    return response.json


def test_a_multipart_file_past_1_mib_is_imported_like_a_json_one(client, runtime):
    data = _csv(16_000)
    assert len(data) > MiB
    response = _post(client, _form(data))
    assert response.status_code == 202, response.get_data(as_text=True)
    submitted = response.json
    assert response.headers["Location"] == f"{BASE}/{submitted['id']}"
    assert (submitted["status"], submitted["total_rows"], submitted["mapping"]) == ("pending", 16_000, MAPPING)
    with runtime.session_factory() as s:  # stored as the text it is, not as base64 or bytes
        stored = s.scalar(select(ContactImportFile.content))
    assert stored == data.decode()

    job = ImportJob(runtime)
    while job.run_once():
        pass
    done = client.get(f"{BASE}/{submitted['id']}", headers=IMPORTER).json
    assert (done["status"], done["created"], done["failed"]) == ("completed", 16_000, 0)
    with runtime.session_factory() as s:
        last = s.scalar(select(Contact).where(Contact.email_normalized == "person15999@upload.example"))
    assert (last.first_name, last.company) == ("Name15999", "Company number 91")


def test_the_mapping_may_come_as_a_json_file_part_and_a_byte_order_mark_is_dropped(client):
    mapping = (io.BytesIO(json.dumps({"E-mail": "email"}).encode()), "mapping.json", "application/json")
    response = _post(client, _form(b"\xef\xbb\xbfE-mail\nann@example.com\n", mapping=mapping))
    assert response.status_code == 202, response.get_data(as_text=True)
    assert (response.json["total_rows"], response.json["mapping"]) == (1, {"E-mail": "email"})


@pytest.mark.parametrize("form, field, message", [
    (lambda: {"mapping": json.dumps(MAPPING)}, "file", "Missing data for required field."),
    (lambda: _form(_csv(2), mapping=None), "mapping", "Missing data for required field."),
    (lambda: {"file": "E-mail\nann@example.com\n", "mapping": json.dumps(MAPPING)}, "file", "as a file part"),
    (lambda: _form("E-mail\nbjörn@example.com\n".encode("latin-1"), {"E-mail": "email"}), "file", "not UTF-8"),
    (lambda: _form(_csv(2), mapping="E-mail=email"), "mapping", "Not JSON"),
    (lambda: _form(_csv(2), mapping='["E-mail", "email"]'), "mapping", "Not a valid mapping type."),
    (lambda: _form(_csv(2), mapping='{"E-mail": 7}'), "mapping", "Not a valid string."),
    (lambda: _form(_csv(2), {"Mail": "email"}), "mapping", "Not a column of the file's header row."),
    (lambda: _form(_csv(2), dry_run="true"), "dry_run", "Unknown field."),
])
def test_a_part_that_is_missing_or_cannot_be_imported_is_a_422_naming_it(client, runtime, form, field, message):
    problem = _problem(_post(client, form()), 422)
    assert message in json.dumps(problem["errors"][field], ensure_ascii=False), problem
    assert _imports(runtime) == 0


def test_a_body_past_the_upload_size_is_a_413_problem_and_stores_nothing(service_app, contacts_settings, runtime):
    small = service_app("contacts", database_url=contacts_settings.database_url,
                        CRM_MAX_UPLOAD_BYTES=str(MiB + MiB // 2)).test_client()
    assert _post(small, _form(_csv(18_000))).status_code == 202  # ~1.3 MiB
    problem = _problem(_post(small, _form(_csv(24_000))), 413)  # ~1.7 MiB
    assert problem["max_bytes"] == MiB + MiB // 2
    # JSON keeps the limit of every JSON body, whatever the upload size.
    assert _problem(small.post(BASE, json={"file": "A" * MiB, "mapping": MAPPING}, headers=IMPORTER), 413)
    assert _imports(runtime) == 1


def test_other_media_types_are_415_and_other_routes_still_refuse_multipart(client, rw_headers):
    problem = _problem(client.post(BASE, data=_csv(2), content_type="text/csv", headers=IMPORTER), 415)
    assert problem["detail"] == "Send the body as application/json or multipart/form-data, not text/csv."
    for path in ("/api/v1/contacts", "/api/v1/accounts", f"/api/v1/contacts/{uuid.uuid4()}/tags"):
        response = client.post(path, data={"email": "ann@example.com"}, content_type="multipart/form-data",
                               headers=rw_headers)
        assert _problem(response, 415)["detail"] == "Send the body as application/json, not multipart/form-data."


def test_a_retry_with_the_same_key_replays_though_its_boundary_differs(client, runtime):
    headers = {**IMPORTER, "Idempotency-Key": "upload-once"}
    data = _csv(5)
    first = _post(client, _form(data), headers)
    # The same parts in another order, another boundary and the mapping's keys reordered: the same request.
    again = client.post(BASE, headers=headers, content_type="multipart/form-data", data={
        "mapping": json.dumps(dict(reversed(list(MAPPING.items())))),
        "file": (io.BytesIO(data), "renamed.csv", "text/csv")})
    assert first.status_code == again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true" and again.json["id"] == first.json["id"]
    other = _post(client, _form(_csv(5, start=1)), headers)
    assert "Idempotency-Key" in _problem(other, 422)["errors"]
    assert _imports(runtime) == 1


def test_only_a_key_with_contacts_import_may_upload(client, runtime):
    for headers in (identity_headers("contacts:*"), identity_headers("contacts:export")):
        assert _post(client, _form(_csv(2)), headers).status_code == 403
    assert _imports(runtime) == 0
