"""Forwarding: the upstream sees the call unchanged plus a signed identity, never the caller's credentials."""
from __future__ import annotations

import time
import uuid

import pytest

from services.common.identity import HEADER, Principal, issue_token, verify_token
from services.gateway.app import create_app
from services.gateway.proxy import UpstreamProxy
from tests.support.infra import IDENTITY_PRIVATE_KEY, IDENTITY_PUBLIC_KEY, free_port

pytestmark = pytest.mark.integration

IDENTITY = HEADER.lower()


def test_the_upstream_receives_method_path_query_body_and_allowed_headers_unchanged(client, make_key, upstream):
    key = make_key("leads:write")
    response = client.post("/api/v1/leads/42/convert?dry_run=1&tag=a&tag=b", data='{"note": "hi"}',
                           headers={"X-API-Key": key, "Content-Type": "application/json", "Accept": "application/json",
                                    "Idempotency-Key": "idem-1", "If-Match": '"v6"', "If-None-Match": '"v5"',
                                    "X-Request-ID": "req-123", "Cookie": "a=b", "X-Custom": "nope"})
    assert response.status_code == 200
    seen = upstream.received[-1]
    assert seen["method"] == "POST"
    assert seen["path"] == "/api/v1/leads/42/convert"
    assert seen["query"] == "dry_run=1&tag=a&tag=b"
    assert seen["body"] == '{"note": "hi"}'
    headers = seen["headers"]
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "application/json"
    assert headers["idempotency-key"] == "idem-1"
    assert headers["if-match"] == '"v6"' and headers["if-none-match"] == '"v5"'
    assert headers["x-request-id"] == "req-123"
    assert "cookie" not in headers and "x-custom" not in headers
    assert response.headers["X-Request-ID"] == "req-123"


def test_the_upstream_gets_a_valid_identity_token_for_the_callers_key(client, make_key, upstream, gateway):
    key = make_key("leads:read", "contacts:*", name="crm-app")
    client.get("/api/v1/contacts/7", headers={"X-API-Key": key, "X-Request-ID": "trace-9"})
    token = upstream.received[-1]["headers"][IDENTITY]
    principal, _expires = verify_token(token, IDENTITY_PUBLIC_KEY, service="contacts")
    listed = next(k for k in _list_keys(gateway) if k.name == "crm-app")
    assert principal.key_id == str(listed.id)
    assert principal.kind == "internal"
    assert principal.scopes == frozenset({"leads:read", "contacts:*"})
    assert principal.name == "crm-app"
    assert upstream.received[-1]["headers"]["x-request-id"] == "trace-9"


def test_a_partner_identity_carries_its_partner_id(client, make_key, upstream):
    partner = uuid.uuid4()
    key = make_key(partner_id=partner)
    client.get("/api/v1/partner-portal/terms", headers={"X-API-Key": key})
    principal, _ = verify_token(upstream.received[-1]["headers"][IDENTITY], IDENTITY_PUBLIC_KEY, service="partners")
    assert principal.kind == "partner" and principal.partner_id == str(partner)


def test_a_forged_identity_header_and_the_callers_credentials_are_not_passed_on(client, make_key, upstream):
    key = make_key("leads:read")
    forged = issue_token(Principal(key_id="attacker", kind="internal", scopes=frozenset({"admin"})),
                         IDENTITY_PRIVATE_KEY, audiences="crm-leads")
    client.get("/api/v1/leads", headers={"Authorization": f"Bearer {key}", "X-API-Key": key, HEADER: forged})
    headers = upstream.received[-1]["headers"]
    assert headers[IDENTITY] != forged
    principal, _ = verify_token(headers[IDENTITY], IDENTITY_PUBLIC_KEY, service="leads")
    assert principal.key_id != "attacker" and "admin" not in principal.scopes
    assert "authorization" not in headers and "x-api-key" not in headers
    assert key not in str(headers)


def test_the_caller_gets_the_upstream_status_body_and_only_safe_headers(client, make_key, upstream):
    key = make_key("leads:read")
    response = client.get("/api/v1/leads?status=409", headers={"X-API-Key": key})
    assert response.status_code == 409
    assert response.json["path"] == "/api/v1/leads"
    assert response.headers["ETag"] == '"v7"'
    assert response.headers["Location"] == "/api/v1/leads/42", "internal addresses are not revealed"
    assert "Set-Cookie" not in response.headers
    assert "X-Internal-Debug" not in response.headers


def test_an_unrouted_path_is_404_problem_and_reaches_no_upstream(client, make_key, upstream):
    key = make_key("admin")
    for path in ("/api/v1/unknown", "/api/v1/leadsx", "/api/v2/leads", "/elsewhere"):
        response = client.get(path, headers={"X-API-Key": key})
        assert response.status_code == 404, path
        assert response.mimetype == "application/problem+json"
    assert upstream.received == []


def test_dot_segments_cannot_climb_out_of_a_route(client, make_key, upstream):
    key = make_key(partner_id=uuid.uuid4())
    response = client.get("/api/v1/partner-portal/../contacts", headers={"X-API-Key": key})
    assert response.status_code in (400, 403, 404)
    assert upstream.received == []


def test_an_upstream_on_a_closed_port_is_502_problem(gateway_settings, make_key_on):
    app = create_app(gateway_settings(CRM_LEADS_URL=f"http://127.0.0.1:{free_port()}"))
    key = make_key_on(app, "leads:read")
    response = app.test_client().get("/api/v1/leads", headers={"X-API-Key": key})
    assert response.status_code == 502
    assert response.mimetype == "application/problem+json"
    assert response.json["title"] == "Bad Gateway"
    assert response.json["upstream"] == "leads"


def test_an_upstream_with_an_unresolvable_name_is_502_problem(gateway_settings, make_key_on):
    app = create_app(gateway_settings(CRM_LEADS_URL="http://no-such-host.invalid:9"))
    key = make_key_on(app, "leads:read")
    response = app.test_client().get("/api/v1/leads", headers={"X-API-Key": key})
    assert response.status_code == 502


def test_an_upstream_slower_than_the_timeout_is_504_within_about_the_timeout(client, make_key, upstream):
    key = make_key("leads:read")
    # The upstream answers after 4 s; a 504 (not its 200) shows the 1 s timeout cut the call short.
    response = client.get("/api/v1/leads/slow?seconds=4", headers={"X-API-Key": key})
    assert response.status_code == 504
    assert response.mimetype == "application/problem+json"
    assert response.json["title"] == "Gateway Timeout"


def test_repeated_failures_open_the_circuit_then_a_trial_closes_it(gateway_settings, make_key_on, upstream):
    settings = gateway_settings(CRM_LEADS_URL=f"http://127.0.0.1:{free_port()}")
    proxy = UpstreamProxy.from_settings(settings, failure_threshold=3, open_seconds=1.0)
    app = create_app(settings, proxy=proxy)
    client = app.test_client()
    headers = {"X-API-Key": make_key_on(app, "leads:read", "contacts:read")}
    assert [client.get("/api/v1/leads", headers=headers).status_code for _ in range(3)] == [502, 502, 502]
    refused = client.get("/api/v1/leads", headers=headers)
    assert refused.status_code == 503
    assert refused.mimetype == "application/problem+json"
    assert int(refused.headers["Retry-After"]) >= 1
    # The breaker is per upstream: contacts still answers.
    assert client.get("/api/v1/contacts", headers=headers).status_code == 200
    # The leads service comes back; after the open time one trial goes through and closes the circuit.
    proxy.upstreams["leads"] = upstream.url
    time.sleep(1.1)
    assert client.get("/api/v1/leads", headers=headers).status_code == 200
    assert client.get("/api/v1/leads", headers=headers).status_code == 200


def test_the_circuit_opens_after_five_failures_by_default(gateway_settings, make_key_on):
    app = create_app(gateway_settings(CRM_LEADS_URL=f"http://127.0.0.1:{free_port()}"))
    client = app.test_client()
    headers = {"X-API-Key": make_key_on(app, "leads:read")}
    statuses = [client.get("/api/v1/leads", headers=headers).status_code for _ in range(6)]
    assert statuses == [502] * 5 + [503]


def test_a_route_to_an_upstream_without_a_url_is_503(gateway_settings, make_key_on):
    settings = gateway_settings()
    settings = settings.replace(upstreams={k: v for k, v in settings.upstreams.items() if k != "loyalty"})
    app = create_app(settings)
    response = app.test_client().get("/api/v1/loyalty/members", headers={"X-API-Key": make_key_on(app, "admin")})
    assert response.status_code == 503
    assert response.json["upstream"] == "loyalty"


def _list_keys(app):
    from services.gateway import keys

    with app.extensions["crm.runtime"].uow() as work:
        return keys.list_keys(work.session)["items"]
