"""End to end through the gateway: a 100,000-row CSV uploaded as multipart/form-data, imported by the contacts
worker, and exported back as CSV streamed through the gateway."""
from __future__ import annotations

import csv
import io
import json
import time

import pytest
import requests

from tests.support.suite import wait_until

pytestmark = pytest.mark.e2e

ROWS = 100_000
DOMAIN = "bulk-upload.example"  # no other test's contacts have it, so ?q= selects exactly these


def _csv() -> bytes:
    """100,000 people, about 8 MB."""
    out = io.StringIO()
    out.write("E-mail,First name,Last name,Company,Job title\r\n")
    for i in range(ROWS):
        out.write(f"person{i:06d}@{DOMAIN},Firstname{i},Lastname{i},Company {i % 1000} Holdings Ltd,"
                  f"Regional account manager {i % 50}\r\n")
    return out.getvalue().encode()


@pytest.fixture(scope="module")
def key(suite):
    return suite.create_key(scopes="contacts:*,contacts:import,contacts:export", name="e2e-bulk-import")


def test_a_100000_row_upload_is_imported_and_exported_back_streamed(suite, key):
    auth = {"Authorization": f"Bearer {key}"}
    data = _csv()
    assert len(data) > 7_500_000
    started = time.monotonic()
    response = requests.post(f"{suite.gateway_url}/api/v1/contacts/imports", headers=auth, timeout=60, files={
        "file": ("people.csv", data, "text/csv"),
        "mapping": (None, json.dumps({"E-mail": "email", "First name": "first_name", "Last name": "last_name",
                                      "Company": "company", "Job title": "job_title"}))})
    assert response.status_code == 202, response.text[:500]
    assert response.json()["total_rows"] == ROWS
    location = suite.gateway_url + response.headers["Location"]

    def completed():
        body = requests.get(location, headers=auth, timeout=30).json()
        assert body["status"] in ("pending", "running", "completed"), body
        return body if body["status"] == "completed" else None

    done = wait_until(completed, timeout=120, interval=0.5, message="the import to complete")
    assert (done["processed"], done["created"], done["updated"], done["failed"]) == (ROWS, ROWS, 0, 0)
    imported = time.monotonic()

    with requests.get(f"{suite.gateway_url}/api/v1/contacts/export", params={"q": f"@{DOMAIN}"}, headers=auth,
                      stream=True, timeout=30) as export:
        assert export.status_code == 200
        assert export.headers["Transfer-Encoding"] == "chunked" and "Content-Length" not in export.headers
        assert export.headers["Content-Disposition"] == 'attachment; filename="contacts.csv"'
        pieces = 0
        text = io.StringIO()
        for piece in export.iter_content(chunk_size=None):
            pieces += 1
            text.write(piece.decode())
    rows = list(csv.DictReader(io.StringIO(text.getvalue())))
    assert len(rows) == ROWS and pieces > 10  # relayed piece by piece, not as one body
    assert {row["email"] for row in rows} == {f"person{i:06d}@{DOMAIN}" for i in range(ROWS)}
    last = next(row for row in rows if row["email"] == f"person{ROWS - 1:06d}@{DOMAIN}")
    assert (last["first_name"], last["company"]) == (f"Firstname{ROWS - 1}", "Company 999 Holdings Ltd")
    print(f"upload + import {imported - started:.1f} s, export {time.monotonic() - imported:.1f} s")
