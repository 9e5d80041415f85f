"""The gateway's merged OpenAPI document, checked by schemathesis against the running suite (issue 7 §2).

Every operation of `GET /api/openapi.json` is called with cases schemathesis generates from the document:
valid ones, invalid ones (negative mode: wrong types, missing fields, out-of-range values), and valid ones aimed
at records that exist (so detail routes answer 200, not only 404). Every answer must be no 5xx, with a
documented status code, content type and headers, and a body that matches the documented schema.

Hypothesis is derandomised and keeps no example database, so a run is repeatable. The pytest plugin's
`from_fixture` loader, the way to load a document served by a fixture, fails on pytest 9.2 (it sets
`Item._nodeid`, which pytest 9.2 removed), so the cases are drawn with schemathesis's Python API
(`APIOperation.as_strategy`) under Hypothesis's `@given`, one operation after another in one test.
"""
from __future__ import annotations

import base64
import re
import time
from collections import Counter

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

pytestmark = pytest.mark.e2e

PORTAL = "/api/v1/partner-portal/"
TERMINATION_PREFIXES = ("customers", "partners")
# Cases per operation and strategy (valid, invalid, valid on existing records); an operation whose inputs
# allow fewer distinct cases (GET /api/v1/plugins has none) gets fewer.
MAX_EXAMPLES = 15
MIN_CASES = 1000
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance")
CONFIG = {"checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}}, "request-timeout": 30}
HYPOTHESIS = settings(
    max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
    # No shrinking: a failure is reported as drawn (with a curl line), without hundreds of further calls.
    phases=[Phase.explicit, Phase.generate],
    # The health checks judge how fast data is generated ("too slow" is a wall-clock judgement a loaded
    # machine fails at random); they say nothing about the API.
    suppress_health_check=list(HealthCheck),
)
_PATH_PARAMETER = re.compile(r"{([^}]+)}")


def _post(url: str, key: str, body: dict) -> dict:
    response = requests.post(url, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert response.status_code in (200, 201, 202), response.text
    return response.json()


def _first_item(url: str, key: str, *, wait: float = 30.0) -> dict:
    """The first item of a list the workers fill in asynchronously, once there is one."""
    deadline = time.monotonic() + wait
    while True:
        items = requests.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=30).json()["items"]
        if items or time.monotonic() > deadline:
            assert items, f"nothing at {url} after {wait} s"
            return items[0]
        time.sleep(0.2)


def _termination_records(api: str, admin: str, prefix: str, policy: dict) -> dict:
    """A policy, a simulation and (once the evidence event was evaluated) a recommendation of one subject kind.
    The policy recommends `re_specify`, so accepting its recommendation ends no relationship. It is created
    enabled, for the evidence event to recommend, and disabled once it has (Records)."""
    created = _post(f"{api}/termination/{prefix}/policies", admin, {**policy, "enabled": True})
    run = _post(f"{api}/termination/{prefix}/simulations", admin, {})
    return {"policy_id": created["id"], "run_id": run["id"]}


def _enabled_policies(api: str, key: str) -> dict[str, set[str]]:
    """The ids of the enabled termination policies, by prefix."""
    enabled: dict[str, set[str]] = {}
    for prefix in TERMINATION_PREFIXES:
        enabled[prefix], cursor = set(), None
        while True:
            page = requests.get(f"{api}/termination/{prefix}/policies", timeout=30,
                                params={"enabled": "true", "limit": 200, **({"cursor": cursor} if cursor else {})},
                                headers={"Authorization": f"Bearer {key}"})
            assert page.status_code == 200, page.text
            enabled[prefix] |= {policy["id"] for policy in page.json()["items"]}
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
    return enabled


def _disable_policy(api: str, key: str, prefix: str, policy_id: str) -> None:
    response = requests.patch(f"{api}/termination/{prefix}/policies/{policy_id}", json={"enabled": False},
                              headers={"Authorization": f"Bearer {key}", "If-Match": "*"}, timeout=30)
    assert response.status_code == 200 and response.json()["enabled"] is False, response.text


def _partner_with_contract(api: str, admin: str, name: str) -> tuple[str, str]:
    partner = _post(f"{api}/partners", admin, {"name": name, "type": "supplier"})
    contract = _post(f"{api}/partners/{partner['id']}/contracts", admin, {"title": f"{name} frame", "terms": {
        "payment_terms_days": 30, "discount_percent": "2.50", "delivery_lead_time_days": 7,
        "minimum_order_volume": "1000.000", "currency": "EUR", "effective_from": "2026-01-01"}})
    return partner["id"], contract["id"]


class Records:
    """The run's keys, and records for generated calls to land on.

    Calls on existing records may change them (a partner terminated, a key revoked), so those are records of
    their own: the portal partner and the keys the run calls with are never a path parameter.
    """

    def __init__(self, suite):
        api = suite.gateway_url + "/api/v1"
        self.admin = suite.create_key(scopes="admin", name="schemathesis")
        portal_partner, portal_contract = _partner_with_contract(api, self.admin, "Portal supplies")
        self.partner = suite.create_key(partner=portal_partner, name="schemathesis-portal")
        partner, contract = _partner_with_contract(api, self.admin, "Fuzzed supplies")
        contact = _post(f"{api}/contacts", self.admin, {"email": "ada@schemathesis.example", "first_name": "Ada"})
        lead = _post(f"{api}/leads", self.admin, {"email": "lead@schemathesis.example", "source": "web"})
        # A program of its own (not auto-enrolling): the default program's auto-enrolment would race this one.
        program = _post(f"{api}/loyalty/programs", self.admin, {"code": "schemathesis", "name": "Schemathesis",
                                                                "currency": "EUR", "points_per_unit": "1"})
        member = _post(f"{api}/loyalty/members", self.admin, {"contact_id": contact["id"], "program_id": program["id"]})
        purchase = _post(f"{api}/loyalty/purchases", self.admin, {
            "member_id": member["id"], "amount": "12.50", "currency": "EUR", "occurred_at": "2026-01-02T10:00:00+00:00"})
        victim = _post(f"{api}/admin/keys", self.admin, {"name": "schemathesis-victim", "scopes": ["leads:read"]})
        contacts = f"{api}/contacts"
        account = _post(f"{api}/accounts", self.admin, {"name": "Schemathesis Ltd", "domain": "schemathesis-ltd.example"})
        _post(f"{contacts}/{contact['id']}/tags", self.admin, {"tags": ["vip"]})
        _post(f"{contacts}/attributes", self.admin, {"name": "tier", "type": "enum", "options": ["gold", "silver"]})
        interaction = _post(f"{contacts}/{contact['id']}/interactions", self.admin, {
            "type": "note", "summary": "Met at the fair", "occurred_at": "2026-01-02T09:00:00+00:00"})
        payment = _post(f"{contacts}/{contact['id']}/payments", self.admin, {
            "invoice_reference": "INV-SCHEMATHESIS", "amount": "12.50", "currency": "EUR", "due_on": "2026-01-31"})
        # Enabled before the flag, the fraud policy recommends once the contacts worker has the flag's event.
        customers = _termination_records(api, self.admin, "customers", {
            "code": "fraud", "parameters": {"strategy": "re_specify"}})
        flag = _post(f"{contacts}/{contact['id']}/fraud-flags", self.admin, {"code": "chargeback", "reason": "Fuzzed"})
        imported = _post(f"{contacts}/imports", self.admin, {
            "file": base64.b64encode(b"E-mail,Name\nimported@schemathesis.example,Ida\n").decode(),
            "mapping": {"E-mail": "email", "Name": "first_name"}})
        # Erasing is for good: the erasure route works on a person of its own, never on the shared contact.
        erased = _post(f"{contacts}", self.admin, {"email": "eve@schemathesis.example"})
        erasure = _post(f"{contacts}/{erased['id']}/erasure", self.admin, {})
        segment = _post(f"{api}/segments", self.admin, {"name": "Schemathesis VIPs", "rules": {
            "all": [{"field": "tags", "op": "has", "value": "vip"}]}})
        refresh = _post(f"{api}/analytics/refreshes", self.admin, {})
        partners = _termination_records(api, self.admin, "partners", {
            "code": "repeated_disputes", "parameters": {"strategy": "re_specify", "min_disputes": 1,
                                                        "high_disputes": 1, "min_dispute_rate": "0"}})
        deal, portal_deal = (self._partner_records(api, key, partner_id, contract_id) for key, partner_id, contract_id in
                             ((self.admin, partner, contract), (self.partner, portal_partner, portal_contract)))
        self.existing = {
            "contact_id": contact["id"], "lead_id": lead["id"], "program_id": program["id"], "member_id": member["id"],
            "transaction_id": purchase["transaction_id"], "purchase_id": purchase["id"], "partner_id": partner,
            "contract_id": contract, "version": 1, "key_id": victim["id"], "account_id": account["id"], "tag": "vip",
            "name": "tier", "interaction_id": interaction["id"], "import_id": imported["id"],
            "erasure_id": erasure["id"], "refresh_id": refresh["id"], "segment_id": segment["id"],
            "payment_id": payment["id"], "flag_id": flag["id"], **deal,
        }
        self.portal_existing = {"contract_id": portal_contract, **portal_deal}
        self.erased_contact = erased["id"]
        # Termination records by the prefix of their routes: the same parameter names name each side's own.
        self.termination = {
            f"/api/v1/termination/{prefix}/": {**ids, "recommendation_id": _first_item(
                f"{api}/termination/{prefix}/recommendations", self.admin)["id"]}
            for prefix, ids in (("customers", customers), ("partners", partners))}
        # Recommended: the policies have done their part; enabled, they would judge every later contact and
        # partner of the module's suite (the routes answer the same for a disabled policy).
        for prefix, ids in (("customers", customers), ("partners", partners)):
            _disable_policy(api, self.admin, prefix, ids["policy_id"])

    def _partner_records(self, api: str, key: str, partner_id: str, contract_id: str) -> dict:
        """A proposal (made by `key`'s side), a delivery and a dispute of one partner: the portal's own records."""
        portal = key == self.partner
        base = f"{api}/partner-portal" if portal else f"{api}/partners/{partner_id}"
        proposal = _post(f"{api}/partner-portal/contracts/{contract_id}/proposals" if portal
                         else f"{api}/contracts/{contract_id}/proposals", key, {"changes": {"payment_terms_days": 40}})
        delivery = _post(f"{api}/partners/{partner_id}/deliveries", self.admin, {
            "order_reference": "PO-schemathesis", "promised_on": "2026-08-10", "delivered_on": "2026-08-12",
            "quantity_ordered": "100", "quantity_delivered": "95", "quantity_rejected": "1", "amount": "950.00",
            "agreed_amount": "950.00", "currency": "EUR"})
        dispute = _post(f"{base}/disputes", key, {"category": "quality", "amount": "50.00", "currency": "EUR",
                                                  "delivery_id": delivery["id"], "message": "One unit was damaged."})
        return {"proposal_id": proposal["id"], "delivery_id": delivery["id"], "dispute_id": dispute["id"]}

    def headers(self, path: str) -> dict:
        return {"Authorization": f"Bearer {self.partner if path.startswith(PORTAL) else self.admin}"}

    def path_parameters(self, path: str) -> dict:
        known = {**self.existing, **self.portal_existing} if path.startswith(PORTAL) else self.existing
        if path.endswith("/erasure"):
            known = {**known, "contact_id": self.erased_contact}
        for prefix, ids in self.termination.items():
            if path.startswith(prefix):
                known = {**known, **ids}
        return {name: known[name] for name in _PATH_PARAMETER.findall(path)}


def _strategies(operation, records: Records) -> dict[str, object]:
    headers = records.headers(operation.path)
    out = {"valid": operation.as_strategy(schemathesis.GenerationMode.POSITIVE, headers=headers)}
    own_headers = [header for header in operation.headers if header.name != "Authorization"]  # the key: fixed
    if own_headers or any(len(part) for part in (operation.path_parameters, operation.query, operation.body)):
        # An operation without parameters or body (GET /api/v1/plugins) has nothing to get wrong.
        out["invalid"] = operation.as_strategy(schemathesis.GenerationMode.NEGATIVE, headers=headers)
    existing = records.path_parameters(operation.path)
    if existing:
        out["valid, existing records"] = operation.as_strategy(
            schemathesis.GenerationMode.POSITIVE, headers=headers, path_parameters=existing)
    return out


def _call_and_validate_every_case(strategy, label: str, tally: Counter, statuses: Counter) -> None:
    """Send each case Hypothesis draws from `strategy` and check the answer; raises on the first failure."""

    @HYPOTHESIS
    @given(case=strategy)
    def check(case):
        tally[label] += 1
        statuses[f"{case.call_and_validate().status_code // 100}xx"] += 1

    check()


def _describe(exc: BaseException) -> str:
    """A failure's message; a group's (schemathesis's FailureGroup) lists every distinct failure with a curl line."""
    return str(exc) if str(exc) else repr(exc)


@pytest.fixture
def records(suite):
    """The records; afterwards, every termination policy enabled while the test ran (its own, or one a generated
    call made) is disabled again, since the module's later tests share the suite."""
    api = suite.gateway_url + "/api/v1"
    key = suite.create_key(scopes="termination:read,termination:manage", name="schemathesis-cleanup")
    before = _enabled_policies(api, key)
    try:
        yield Records(suite)
    finally:
        for prefix, enabled in _enabled_policies(api, key).items():
            for policy_id in sorted(enabled - before[prefix]):
                _disable_policy(api, key, prefix, policy_id)
        assert _enabled_policies(api, key) == before


def test_every_answer_of_the_gateway_matches_its_openapi_document(suite, records, capsys):
    schema = schemathesis.openapi.from_url(suite.gateway_url + "/api/openapi.json",
                                           config=schemathesis.Config.from_dict(CONFIG))
    assert "x-unavailable-upstreams" not in schema.raw_schema, schema.raw_schema["x-unavailable-upstreams"]
    operations = [result.ok() for result in schema.get_all_operations()]
    tally: Counter = Counter()
    statuses: Counter = Counter()
    failures: dict[str, str] = {}

    for operation in operations:
        for kind, strategy in _strategies(operation, records).items():
            try:
                _call_and_validate_every_case(strategy, operation.label, tally, statuses)
            except (Exception, BaseExceptionGroup) as exc:  # schemathesis reports failed checks as a group
                if isinstance(exc, BaseExceptionGroup) and exc.split(Exception)[1] is not None:
                    raise  # an interrupt, not a finding
                failures[f"{operation.label} ({kind})"] = _describe(exc)

    total = sum(tally.values())
    passed = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
    lines = [f"schemathesis: {total} cases over {len(tally)} of {len(operations)} operations; passed: {passed}"]
    lines += [f"  {tally[op.label]:4d}  {op.label}" for op in operations]
    with capsys.disabled():  # shown on every run, not only on a failure
        print("\n" + "\n".join(lines))
    assert not failures, "\n\n".join(f"{name}:\n{message}" for name, message in failures.items())
    assert [op.label for op in operations if not tally[op.label]] == [], "\n".join(lines)
    assert total >= MIN_CASES, "\n".join(lines)


# -- What the first schemathesis runs found, pinned down one by one ----------------------------------------------

def _admin(suite) -> tuple[str, dict]:
    key = suite.create_key(scopes="admin", name="findings")
    return key, {"Authorization": f"Bearer {key}"}


def _is_problem(response) -> bool:
    return response.headers["Content-Type"].startswith("application/problem+json")


def test_a_request_line_longer_than_the_upstreams_read_is_a_414_problem_from_the_gateway(suite):
    (_key, headers), path = _admin(suite), "/api/v1/leads"
    # The request line the upstream would read: "GET /api/v1/leads?x=aaa... HTTP/1.1".
    def query(line_length: int) -> str:
        return "x=" + "a" * (line_length - len(f"GET {path}?x= HTTP/1.1"))

    longest = requests.get(f"{suite.gateway_url}{path}?{query(4094)}", headers=headers, timeout=30)
    assert longest.status_code == 200, longest.text
    too_long = requests.get(f"{suite.gateway_url}{path}?{query(4095)}", headers=headers, timeout=30)
    assert too_long.status_code == 414 and _is_problem(too_long), too_long.text
    assert too_long.json()["upstream"] == "leads"


def test_an_upstream_servers_own_refusal_reaches_the_caller_as_a_problem_not_html(suite):
    # gunicorn refuses a header over 8190 bytes with an HTML page before the service sees the request.
    response = requests.get(f"{suite.gateway_url}/api/v1/leads", timeout=30,
                            headers={**_admin(suite)[1], "Accept": "application/json, " + "x" * 9000})
    assert response.status_code == 431 and _is_problem(response), response.text
    assert "<html" not in response.text.lower()


def test_a_patch_or_put_without_a_body_is_a_400_problem_and_changes_nothing(suite):
    key, headers = _admin(suite)
    api = suite.gateway_url + "/api/v1"
    contact = _post(f"{api}/contacts", key, {"email": "bodiless@schemathesis.example"})
    for method, url in (("PATCH", f"{api}/contacts/{contact['id']}"), ("PATCH", f"{api}/loyalty/programs/{contact['id']}"),
                        ("PUT", f"{api}/contracts/{contact['id']}/terms")):
        response = requests.request(method, url, headers={**headers, "If-Match": "*"}, timeout=30)
        assert response.status_code == 400 and _is_problem(response), (method, url, response.text)
    assert requests.get(f"{api}/contacts/{contact['id']}", headers=headers, timeout=30).json()["version"] == 1
    # A method the route does not take is still a 405, body or not.
    assert requests.put(f"{api}/contacts/{contact['id']}", headers=headers, timeout=30).status_code == 405


def test_an_empty_idempotency_key_is_a_422_naming_the_header(suite):
    response = requests.post(f"{suite.gateway_url}/api/v1/contacts", timeout=30,
                             json={"email": "empty-key@schemathesis.example"},
                             headers={**_admin(suite)[1], "Idempotency-Key": ""})
    assert response.status_code == 422 and _is_problem(response), response.text
    assert list(response.json()["errors"]) == ["Idempotency-Key"]
