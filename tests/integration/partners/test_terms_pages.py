"""A contract's terms history is cursor-paginated like every other list (issue 7 §2, DESIGN §6).

`GET /api/v1/contracts/{id}/terms` and its partner-portal twin page newest version first with `?limit=` and
`?cursor=`; a portal cursor walks only the calling partner's contract, and another partner gets 404 with or
without one.
"""
from __future__ import annotations

import pytest

from tests.support.auth import identity_headers

from .conftest import READ

pytestmark = pytest.mark.integration

PORTAL = "/api/v1/partner-portal"


@pytest.fixture
def contract(api):
    """A contract with five versions of terms: payment terms 30 (v1), then 31, 32, 33, 34."""
    partner = api.partner("Acme", "supplier")
    made = api.contract(partner["id"])
    for version in range(1, 5):
        api.change_terms(made["id"], version, payment_terms_days=30 + version)
    return partner, made


def _walk(client, path: str, headers, limit: int) -> tuple[list[list[int]], dict]:
    """Every page of `path` at `limit`: the versions on each page, and the last page's body."""
    pages, cursor = [], None
    while True:
        query = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        r = client.get(path, headers=headers, query_string=query)
        assert r.status_code == 200, r.text
        pages.append([v["version"] for v in r.json["items"]])
        cursor = r.json["next_cursor"]
        if cursor is None:
            return pages, r.json
        assert len(pages) < 10, "the cursor does not advance"


def test_the_terms_history_pages_newest_first(client, contract):
    _partner, made = contract
    path = f"/api/v1/contracts/{made['id']}/terms"

    pages, last = _walk(client, path, READ, limit=2)

    assert pages == [[5, 4], [3, 2], [1]]
    assert last["contract_id"] == made["id"] and last["current_version"] == 5
    whole = client.get(path, headers=READ)
    assert [v["version"] for v in whole.json["items"]] == [5, 4, 3, 2, 1] and whole.json["next_cursor"] is None
    assert whole.headers["ETag"] == 'W/"5"'
    assert [v["payment_terms_days"] for v in whole.json["items"]] == [34, 33, 32, 31, 30]
    assert whole.json["items"][0]["changed_by"] == "test-key"


def test_the_terms_page_size_is_bounded_and_a_bad_cursor_is_a_422(client, contract):
    _partner, made = contract
    path = f"/api/v1/contracts/{made['id']}/terms"

    for query in ({"limit": 0}, {"limit": 201}, {"limit": "x"}, {"cursor": "nope"}):
        r = client.get(path, headers=READ, query_string=query)
        assert r.status_code == 422 and list(r.json["errors"]) == [next(iter(query))], (query, r.text)


def test_the_portal_pages_a_partners_own_terms_and_no_one_elses(client, api, contract):
    partner, made = contract
    other = api.partner("Globex", "distributor")
    api.contract(other["id"])
    mine = identity_headers(kind="partner", partner_id=partner["id"], key_id="key-acme")
    theirs = identity_headers(kind="partner", partner_id=other["id"], key_id="key-globex")
    path = f"{PORTAL}/contracts/{made['id']}/terms"

    pages, last = _walk(client, path, mine, limit=3)

    assert pages == [[5, 4, 3], [2, 1]] and last["current_version"] == 5
    assert "changed_by" not in client.get(path, headers=mine).json["items"][0]
    cursor = client.get(path, headers=mine, query_string={"limit": 1}).json["next_cursor"]
    for query in ({}, {"limit": 1}, {"cursor": cursor}):
        r = client.get(path, headers=theirs, query_string=query)
        assert r.status_code == 404 and r.mimetype == "application/problem+json", (query, r.text)
        assert "items" not in r.json
