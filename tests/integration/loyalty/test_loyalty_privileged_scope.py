"""Privileged loyalty operations need `loyalty:admin` (issue 7 §2): balance adjustments, reversals, programs.

`loyalty:write` (and `loyalty:*`, which is read and write) still records purchases, enrols members and redeems;
it may no longer correct balances by hand, undo ledger entries or create and change programs.
"""
from __future__ import annotations

import uuid

import pytest

from services.loyalty.models import LedgerEntry, Program
from tests.integration.loyalty.support import count, enrol, purchase_body, rw
from tests.support.auth import identity_headers

pytestmark = pytest.mark.integration

DEFAULT_PROGRAM_ID = "5b0c3f52-8d3e-4a7e-9b61-6c0d1f2a9e01"
NOT_PRIVILEGED = [("loyalty:write",), ("loyalty:read", "loyalty:write"), ("loyalty:*",), ("admin:*",),
                  ("leads:admin",)]
PRIVILEGED = [("loyalty:read", "loyalty:admin"), ("admin",)]


def _earned(client) -> tuple[dict, dict]:
    """A member with one earn entry (from a purchase, which loyalty:write may record)."""
    member = enrol(client)
    purchase = client.post("/api/v1/loyalty/purchases", headers=rw(), json=purchase_body(member["contact_id"]))
    assert purchase.status_code == 201, purchase.text
    return member, purchase.json


def _calls(client) -> dict[str, tuple[str, str, dict]]:
    member, purchase = _earned(client)
    return {
        "adjustment": ("post", f"/api/v1/loyalty/members/{member['id']}/adjustments",
                       {"points": 5, "reason": "goodwill"}),
        "reversal": ("post", f"/api/v1/loyalty/members/{member['id']}/transactions/{purchase['transaction_id']}/reversal",
                     {"reason": "goods returned"}),
        "program create": ("post", "/api/v1/loyalty/programs",
                           {"code": f"p{uuid.uuid4().hex[:8]}", "name": "Gold", "currency": "EUR",
                            "points_per_unit": "2"}),
        "program change": ("patch", f"/api/v1/loyalty/programs/{DEFAULT_PROGRAM_ID}", {"points_per_unit": "3"}),
    }


ROUTES = ["adjustment", "reversal", "program create", "program change"]


@pytest.mark.parametrize("route", ROUTES)
def test_a_privileged_operation_is_refused_without_loyalty_admin(loyalty, client, route):
    method, path, body = _calls(client)[route]
    entries, programs = count(loyalty, LedgerEntry), count(loyalty, Program)

    for scopes in NOT_PRIVILEGED:
        r = getattr(client, method)(path, headers=identity_headers(*scopes), json=body)

        assert r.status_code == 403, (scopes, r.text)
        assert r.headers["Content-Type"].startswith("application/problem+json")
        assert "loyalty:admin" in r.json["detail"]
    assert (count(loyalty, LedgerEntry), count(loyalty, Program)) == (entries, programs)
    program = client.get(f"/api/v1/loyalty/programs/{DEFAULT_PROGRAM_ID}", headers=rw()).json
    assert program["points_per_unit"] == "1"


@pytest.mark.parametrize("route", ROUTES)
def test_loyalty_admin_or_admin_may_do_a_privileged_operation(client, route):
    for scopes in PRIVILEGED:
        method, path, body = _calls(client)[route]

        r = getattr(client, method)(path, headers=identity_headers(*scopes), json=body)

        assert r.status_code == (200 if method == "patch" else 201), (scopes, r.text)
        assert r.json["id"]


def test_loyalty_write_still_records_purchases_enrols_and_redeems(client):
    member, _purchase = _earned(client)

    r = client.post(f"/api/v1/loyalty/members/{member['id']}/redemptions",
                    headers=identity_headers("loyalty:read", "loyalty:write"), json={"points": 2})

    assert r.status_code == 201, r.text
