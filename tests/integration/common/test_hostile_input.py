"""Forged cursors, JSON nested 100,000 deep and NUL characters get 400/422, never 500 (issue 7 §2).

Each service (and the gateway's admin API) runs on PostgreSQL and on SQLite. The test walks the app's URL map,
so a list or a body endpoint added later is covered without being named here: every list is called with
cursors this API never issued (an overflowing sequence number, a negative one, garbage, a NUL byte), every
POST/PUT/PATCH with hostile bodies, with and without an Idempotency-Key.
"""
from __future__ import annotations

import base64
import uuid

import pytest
from sqlalchemy import func, select

from crm.registry import SUITE
from services.gateway import keys
from tests.support.auth import identity_headers

pytestmark = pytest.mark.integration

NOT_VIEWS = {"healthz", "readyz", "metrics_view", "static", "proxy"}


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


FORGED_CURSORS = [
    "%%%", "\x00", "é", _b64("x:1"), _b64("s:1\x00"), _b64("s:" + "9" * 5000),
    _b64("s:9223372036854775808"),  # one past the largest BIGINT
    _b64("s:99999999999999999999999999"), _b64("s:-99999999999999999999"), _b64("s:-1"), _b64("s:0"),
]
DEEP_BODIES = ["[" * 100_000 + "]" * 100_000, '{"a":' * 100_000 + "1" + "}" * 100_000,
               '{"name": ' + "[" * 5_000 + "]" * 5_000 + "}"]
# Real fields of real bodies, so without the check the NUL would reach the database.
NUL_BODIES = {
    ("POST", "/api/v1/contacts"): {"email": "ann@example.com", "first_name": "A\u0000nn"},
    ("POST", "/api/v1/leads"): {"email": "ann@example.com", "company": "Acme\u0000"},
    ("POST", "/api/v1/loyalty/programs"): {"code": "gold", "name": "Gold\u0000", "currency": "EUR",
                                           "points_per_unit": "1"},
    ("POST", "/api/v1/partners"): {"name": "\u0000Acme", "type": "supplier"},
    ("POST", "/api/v1/admin/keys"): {"name": "ci\u0000", "scopes": ["leads:read"]},
}
NUL_QUERIES = {"/api/v1/contacts": ["email", "q"], "/api/v1/partners": ["q"], "/api/v1/leads": ["source"]}


@pytest.fixture(params=["postgresql", "sqlite"])
def make_app(request, tmp_path, service_app):
    """Factory: one service's app on a fresh migrated database of the parametrised kind."""

    def make(name: str):
        if request.param == "postgresql":
            return service_app(name)
        url = f"sqlite:///{tmp_path}/{name}.db"
        SUITE.migrate(name, url)
        return service_app(name, database_url=url)

    return make


def _seed(name: str, app) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Records for the routes under a parent (so a list reaches its cursor): (path values, internal, partner headers)."""
    client = app.test_client()
    internal = identity_headers(f"{name}:read", f"{name}:write", f"{name}:admin")
    values: dict[str, str] = {}
    partner_headers: dict[str, str] = {}
    if name == "loyalty":
        member = client.post("/api/v1/loyalty/members", headers=internal, json={"contact_id": str(uuid.uuid4())}).json
        values.update(member_id=member["id"], program_id=member["program_id"], contact_id=member["contact_id"])
    elif name == "partners":
        from tests.integration.partners.conftest import TERMS

        partner = client.post("/api/v1/partners", headers=internal, json={"name": "Acme", "type": "supplier"}).json
        contract = client.post(f"/api/v1/partners/{partner['id']}/contracts", headers=internal,
                               json={"title": "Supply", "terms": TERMS}).json
        values.update(partner_id=partner["id"], contract_id=contract["id"], version="1")
        partner_headers = identity_headers(kind="partner", partner_id=partner["id"])
    elif name == "gateway":
        with app.extensions["crm.runtime"].uow() as work:
            _key, plaintext = keys.create_key(work.session, name="admin", scopes=["admin"])
            work.commit()
        internal = {"Authorization": f"Bearer {plaintext}"}
    return values, internal, partner_headers


def _calls(app, values):
    for rule in app.url_map.iter_rules():
        if rule.endpoint.rsplit(".", 1)[-1] in NOT_VIEWS or not rule.rule.startswith("/api/v1/"):
            continue
        path = rule.build({arg: values.get(arg, str(uuid.uuid4())) for arg in rule.arguments}, append_unknown=False)[1]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield method, rule.rule, path


def _outbox_rows(app) -> int:
    runtime = app.extensions["crm.runtime"]
    if runtime.outbox_model is None:
        return 0
    with runtime.session_factory() as s:
        return s.scalar(select(func.count()).select_from(runtime.outbox_model))


@pytest.mark.parametrize("name", [*[e.name for e in SUITE.upstreams], SUITE.gateway])
def test_hostile_input_is_a_4xx_problem_on_every_list_and_body_endpoint(make_app, name):
    app = make_app(name)
    values, internal, partner = _seed(name, app)
    client = app.test_client()
    wrong, lists, bodies = [], 0, 0
    before = _outbox_rows(app)

    def check(label, response, expected=(400, 422), field=None):
        ok = response.status_code in expected and response.mimetype == "application/problem+json"
        if ok and field and response.status_code == 422:
            ok = field in response.json.get("errors", {})
        if not ok:
            wrong.append(f"{label}: {response.status_code} {response.get_data(as_text=True)[:160]}")

    for method, rule, path in _calls(app, values):
        headers = partner if "/partner-portal/" in path else internal
        if method == "GET":
            plain = client.get(path, headers=headers)
            if plain.status_code != 200 or "next_cursor" not in (plain.json or {}):
                continue
            lists += 1
            for cursor in FORGED_CURSORS:
                check(f"GET {rule} cursor={cursor[:24]!r}", client.get(path, headers=headers,
                                                                         query_string={"cursor": cursor}),
                      field="cursor")
            for arg in NUL_QUERIES.get(rule, []):
                check(f"GET {rule} {arg}=NUL", client.get(path, headers=headers, query_string={arg: "a\x00b"}),
                      field=arg)
        elif method in ("POST", "PUT", "PATCH"):
            bodies += 1
            extra = {"If-Match": "*"}
            for body in DEEP_BODIES:
                for idem in ({}, {"Idempotency-Key": uuid.uuid4().hex}):
                    response = client.open(path, method=method, data=body, content_type="application/json",
                                           headers={**headers, **extra, **idem})
                    check(f"{method} {rule} deep {body[:8]!r} {bool(idem)}", response, expected=(400,))
            if (method, rule) in NUL_BODIES:
                field = next(k for k, v in NUL_BODIES[(method, rule)].items() if isinstance(v, str) and "\x00" in v)
                check(f"{method} {rule} NUL", client.open(path, method=method, json=NUL_BODIES[(method, rule)],
                                                          headers={**headers, **extra}), field=field)

    assert lists and (bodies or name == "gateway"), "no list or body endpoint found"
    assert not wrong, "hostile input not answered with a 4xx problem:\n" + "\n".join(wrong)
    assert _outbox_rows(app) == before


def test_the_gateway_passes_a_proxied_body_on_unparsed_and_authenticates_first(make_app):
    gateway = make_app(SUITE.gateway)
    client = gateway.test_client()

    for body in DEEP_BODIES[:2]:
        r = client.post("/api/v1/leads", data=body, content_type="application/json")
        assert r.status_code == 401 and r.mimetype == "application/problem+json", r.text
    assert client.get("/api/v1/leads", query_string={"q": "a\x00"}).status_code == 401
