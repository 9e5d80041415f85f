"""Every termination route of both services, walked from the URL map, asks for exactly its scope: reading needs
termination:read, writing policies and starting simulations termination:manage, deciding termination:decide only."""
from __future__ import annotations

import uuid

import pytest

from tests.support.auth import identity_headers

from .conftest import CUSTOMERS, PARTNERS

pytestmark = pytest.mark.integration

SCOPES = ("termination:read", "termination:manage", "termination:decide")


def needed(method: str, rule: str) -> str:
    if rule.endswith("/decision"):
        return "termination:decide"
    return "termination:read" if method == "GET" else "termination:manage"


@pytest.mark.parametrize(("service", "prefix"), [("contacts", CUSTOMERS), ("partners", PARTNERS)])
def test_each_route_takes_only_its_scope(service_app, service, prefix):
    app = service_app(service)
    client, some_id, seen = app.test_client(), str(uuid.uuid4()), set()
    wrong = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(prefix):
            continue
        path = rule.rule.replace("<uuid:policy_id>", some_id).replace("<uuid:run_id>", some_id)
        path = path.replace("<uuid:recommendation_id>", some_id)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            seen.add((method, rule.rule.removeprefix(prefix)))
            assert client.open(path, method=method, json={} if method != "GET" else None,
                               headers=identity_headers(key_id="no-scope")).status_code == 403, (method, path)
            for scope in SCOPES:
                r = client.open(path, method=method, json={} if method != "GET" else None,
                                headers=identity_headers(scope, key_id=f"only-{scope}"))
                refused = r.status_code == 403
                if refused != (scope != needed(method, rule.rule)):
                    wrong.append(f"{method} {path} with {scope}: {r.status_code}")
    assert wrong == []
    assert seen == {("GET", "/policies"), ("POST", "/policies"), ("GET", "/policies/<uuid:policy_id>"),
                    ("PATCH", "/policies/<uuid:policy_id>"), ("GET", "/simulations"), ("POST", "/simulations"),
                    ("GET", "/simulations/<uuid:run_id>"), ("GET", "/simulations/<uuid:run_id>/subjects"),
                    ("GET", "/evaluations"), ("GET", "/evaluations/<uuid:run_id>"),
                    ("GET", "/recommendations"), ("GET", "/recommendations/<uuid:recommendation_id>"),
                    ("POST", "/recommendations/<uuid:recommendation_id>/decision"), ("GET", "/decisions")}
