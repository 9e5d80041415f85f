"""A suspended or terminated partner loses its portal at once; the other partner keeps its own."""
from __future__ import annotations

import uuid

import pytest

from tests.support.auth import identity_headers

from .conftest import RW

pytestmark = pytest.mark.integration

PORTAL = "/api/v1/partner-portal"


def _move(client, partner_id: str, *statuses: str) -> None:
    for status in statuses:
        response = client.patch(f"/api/v1/partners/{partner_id}", json={"status": status}, headers=RW)
        assert response.status_code == 200, response.json


def _portal_statuses(client, headers, contract_id: str) -> list[int]:
    return [client.get(path, headers=headers).status_code
            for path in (f"{PORTAL}/me", f"{PORTAL}/contracts", f"{PORTAL}/contracts/{contract_id}",
                         f"{PORTAL}/contracts/{contract_id}/terms")]


@pytest.fixture
def two_partners(api):
    made = []
    for name in ("A", "B"):
        partner = api.partner(f"Partner {name}", "supplier")
        contract = api.contract(partner["id"], title=f"{name} contract")
        made.append((partner["id"], contract["id"],
                     identity_headers(kind="partner", partner_id=partner["id"], key_id=f"key-{name}")))
    return made


def test_suspending_a_partner_closes_its_portal_at_once_and_reactivating_opens_it(client, two_partners):
    (a, a_contract, a_headers), (b, b_contract, b_headers) = two_partners
    assert _portal_statuses(client, a_headers, a_contract) == [200] * 4
    _move(client, a, "onboarding", "active", "suspended")

    refused = client.get(f"{PORTAL}/me", headers=a_headers)
    assert refused.status_code == 403
    assert refused.mimetype == "application/problem+json"
    assert refused.json["partner_status"] == "suspended"
    assert _portal_statuses(client, a_headers, a_contract) == [403] * 4
    assert _portal_statuses(client, b_headers, b_contract) == [200] * 4, "the other partner keeps its portal"

    _move(client, a, "active")
    assert _portal_statuses(client, a_headers, a_contract) == [200] * 4


def test_a_terminated_partner_is_refused_for_good(client, two_partners):
    (a, a_contract, a_headers), (_b, b_contract, b_headers) = two_partners
    _move(client, a, "terminated")
    assert _portal_statuses(client, a_headers, a_contract) == [403] * 4
    assert _portal_statuses(client, b_headers, b_contract) == [200] * 4


def test_a_key_of_a_partner_that_does_not_exist_opens_nothing(client, two_partners):
    ghost = identity_headers(kind="partner", partner_id=str(uuid.uuid4()), key_id="key-ghost")
    response = client.get(f"{PORTAL}/me", headers=ghost)
    assert response.status_code == 403 and response.mimetype == "application/problem+json"


def test_internal_keys_are_still_refused_by_the_portal_views(client, two_partners):
    (_a, a_contract, _h), _ = two_partners
    assert client.get(f"{PORTAL}/me", headers=RW).status_code == 403
