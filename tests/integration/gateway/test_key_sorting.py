"""`sort=` on the admin key list: by name or revocation time, nulls (keys in use) last, every key once."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from operator import attrgetter

import pytest
from sqlalchemy import select, update

from services.gateway.models import ApiKey
from tests.support.sorting import expected_order, walk

pytestmark = pytest.mark.integration
URL = "/api/v1/admin/keys"


def test_keys_sort_by_name_and_by_revocation_with_keys_in_use_last(gateway, client, admin_key, make_key):
    for i in range(7):
        make_key("leads:read", name=["beta", "alpha", "beta"][i % 3])
    runtime = gateway.extensions["crm.runtime"]
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    with runtime.session_factory() as s, s.begin():
        for i, key in enumerate(s.scalars(select(ApiKey).where(ApiKey.name != "admin").order_by(ApiKey.seq))):
            if i % 2:
                s.execute(update(ApiKey).where(ApiKey.seq == key.seq).values(revoked_at=t0 + timedelta(days=i % 3)))
    with runtime.session_factory() as s:
        stored = list(s.scalars(select(ApiKey)))
    headers = {"X-API-Key": admin_key}

    for sort in ("name", "-name", "revoked_at", "-revoked_at"):
        items, _ = walk(client, URL, headers, limit=3, sort=sort)
        expected = expected_order(stored, attrgetter(sort.lstrip("-")), attrgetter("seq"), descending=sort[0] == "-")
        assert [i["id"] for i in items] == [str(k.id) for k in expected], sort

    r = client.get(URL, headers=headers, query_string={"sort": "key_hash"})
    assert r.status_code == 422 and "-last_used_at" in r.json["errors"]["sort"][0]
