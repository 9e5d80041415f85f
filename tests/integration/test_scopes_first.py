"""Every view checks the caller's scope before it parses any input.

A caller without the scope must get 403 and learn nothing else: a 422 listing the fields a view expects
would leak the API's shape to anyone holding any key. The test walks each app's URL map (every service and
the gateway's admin API), so a view added later is covered without being listed here, and calls every rule
and method with a principal that holds no scope at all and input that no schema accepts.
"""
from __future__ import annotations

import uuid

import pytest

from crm.registry import SUITE
from services.gateway import keys
from services.gateway.routes import PARTNER_PORTAL
from tests.support.auth import identity_headers

# Skipped: the kit's open endpoints and the gateway's proxy, which forwards rather than parses.
NOT_VIEWS = {"healthz", "readyz", "metrics_view", "static", "proxy"}
# Values no query schema accepts: a paging limit that is not a number, ids that are not UUIDs, unknown enums.
MALFORMED_QUERY = {"limit": "not-a-number", "cursor": "%%%", "contact_id": "x", "program_id": "x",
                   "status": "no-such-status", "type": "no-such-type", "kind": "no-such-kind", "min_score": "x",
                   "source": "NOT A SOURCE", "email": "x" * 300, "q": "x" * 300, "sort": "no-such-field"}
MALFORMED_BODY = ["not", "an", "object"]
# Too long to be a key: @idempotent would answer 422 if it ran before the scope check.
MALFORMED_HEADERS = {"Idempotency-Key": "k" * 300, "If-Match": "garbage"}
CONVERTER_VALUES = {"UUIDConverter": str(uuid.uuid4()), "IntegerConverter": "1"}


def _path(rule) -> str:
    values = {name: CONVERTER_VALUES.get(type(converter).__name__, "x")
              for name, converter in rule._converters.items()}
    return rule.build(values, append_unknown=False)[1]


def _calls(app):
    """(method, path, the view's method function) for every API rule of `app`."""
    for rule in app.url_map.iter_rules():
        if rule.endpoint.rsplit(".", 1)[-1] in NOT_VIEWS or not rule.rule.startswith("/api/v1/"):
            continue
        view = app.view_functions[rule.endpoint]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield method, _path(rule), getattr(getattr(view, "view_class", None), method.lower(), view)


def _wrong_answers(app, principals_for) -> list[str]:
    """Every call that a refused principal did not get a plain 403 problem for."""
    client = app.test_client()
    wrong, calls = [], 0
    for method, path, view in _calls(app):
        for label, headers in principals_for(path, view):
            calls += 1
            body = {"json": MALFORMED_BODY} if method in ("POST", "PUT", "PATCH") else {}
            r = client.open(path, method=method, query_string=MALFORMED_QUERY,
                            headers={**MALFORMED_HEADERS, **headers}, **body)
            if r.status_code != 403 or not r.content_type.startswith("application/problem+json"):
                wrong.append(f"{method} {path} as {label}: {r.status_code} {r.get_data(as_text=True)[:200]}")
    assert calls, "no API view found in the URL map"
    return wrong


def _refused_principals(path: str, view):
    """Who must be refused: internal keys on the partner portal; elsewhere partner keys, and internal keys
    without the scope unless the view asks for none (`@requires()`, e.g. the plugin list)."""
    if path.startswith(PARTNER_PORTAL + "/"):
        yield "an internal principal without scopes", identity_headers()
        return
    yield "a partner principal", identity_headers(kind="partner", partner_id=str(uuid.uuid4()))
    if getattr(view, "_crm_scope", "undeclared") is not None:
        yield "an internal principal without scopes", identity_headers()


@pytest.mark.parametrize("name", [e.name for e in SUITE.upstreams])
def test_a_principal_without_the_scope_gets_403_before_any_input_is_parsed(service_app, name):
    wrong = _wrong_answers(service_app(name), _refused_principals)
    assert not wrong, "views that parse input (or answer) before checking the scope:\n" + "\n".join(wrong)


def test_the_gateway_admin_api_refuses_a_key_without_the_admin_scope_before_parsing(service_app):
    gateway = service_app(SUITE.gateway)
    with gateway.extensions["crm.runtime"].uow() as work:
        _key, plaintext = keys.create_key(work.session, name="no-scopes", scopes=())
        work.commit()
    # Partner keys are stopped by the gateway before any view; every admin view needs the admin scope.
    wrong = _wrong_answers(gateway, lambda _path, _view: [("a key without scopes", {"Authorization": f"Bearer {plaintext}"})])
    assert not wrong, "admin views that parse input (or answer) before checking the scope:\n" + "\n".join(wrong)
