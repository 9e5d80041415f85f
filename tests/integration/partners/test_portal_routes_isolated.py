"""Every partner-portal route, found in the app's URL map, held to the portal's isolation rules (OWASP API1, BOLA).

Each portal feature has its own isolation tests, but those list their routes by hand, so a new route is covered
only if its author remembers. Here the routes come from the URL map: a (rule, method) under /api/v1/partner-portal
that is missing from CALLS fails the first test by name, and every one in CALLS is called by two partners, A and
B, with A's records in the path:

- no identity is 401; an internal key, even admin or partners:*, is 403;
- A's key while A is suspended is 403;
- B's key on A's ids is 404 with the same problem as for an id that does not exist;
- none of those refusals writes anything (counts and the versions of A's records stay as they were);
- the routes without path parameters show B only B's own records, never one of A's ids.

Bodies are valid and If-Match is sent where a route takes it, so the refusal cannot come from input validation
or a precondition answering before the ownership check.
"""
from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from services.partners.models import (
    Contract,
    ContractNotice,
    ContractTerms,
    Delivery,
    Dispute,
    DisputeMessage,
    IdempotencyRecord,
    OutboxMessage,
    Partner,
    Proposal,
)
from tests.support.auth import identity_headers

from .conftest import READ, RW, FreshIdentity

pytestmark = pytest.mark.integration

PORTAL = "/api/v1/partner-portal"
ADMIN = FreshIdentity("admin")
EVERY_PARTNERS_SCOPE = FreshIdentity("partners:*")
PARAMETER = re.compile(r"<(?:[^<>]*:)?(\w+)>")


@dataclass
class Tenant:
    """A partner with its portal key and the ids of its records, by the name of the path parameter."""

    partner: dict
    headers: dict
    ids: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.partner["id"]

    def every_id(self) -> set[str]:
        return {self.id, *self.ids.values()}


def _dispute_body(contract_id: str) -> dict:
    return {"category": "delay", "amount": "300.00", "currency": "EUR", "contract_id": contract_id,
            "message": "Order 17 is two weeks late."}


def _delivery_body(reference: str) -> dict:
    return {"order_reference": reference, "promised_on": "2026-08-10", "delivered_on": "2026-08-12",
            "quantity_ordered": "100", "quantity_delivered": "95.5", "quantity_rejected": "2",
            "amount": "950.00", "agreed_amount": "1000.00", "currency": "EUR"}


@dataclass(frozen=True)
class Call:
    """What a call on one (rule, method) needs besides its path: a valid body built from record ids (by the name
    of the path parameter), the ids the body names, extra headers such as If-Match, and what another partner
    gets for the owner's ids (404 unless said)."""

    body: Callable[[dict[str, str]], dict] | None = None
    body_ids: tuple[str, ...] = ()
    headers: dict = field(default_factory=dict)
    foreign_status: int = 404


# Every portal (rule, method). A new portal route fails test_every_portal_route_is_in_the_table until it is
# added here with what a valid call needs.
CALLS: dict[tuple[str, str], Call] = {
    (f"{PORTAL}/me", "GET"): Call(),
    (f"{PORTAL}/contracts", "GET"): Call(),
    (f"{PORTAL}/contracts/<uuid:contract_id>", "GET"): Call(),
    (f"{PORTAL}/contracts/<uuid:contract_id>/terms", "GET"): Call(),
    (f"{PORTAL}/contracts/<uuid:contract_id>/proposals", "GET"): Call(),
    (f"{PORTAL}/contracts/<uuid:contract_id>/proposals", "POST"): Call(
        body=lambda _ids: {"changes": {"delivery_lead_time_days": 10}, "message": "Faster, please"}),
    (f"{PORTAL}/contracts/<uuid:contract_id>/proposals/<uuid:proposal_id>", "GET"): Call(),
    (f"{PORTAL}/contracts/<uuid:contract_id>/proposals/<uuid:proposal_id>/accept", "POST"): Call(
        headers={"If-Match": 'W/"1"'}),
    (f"{PORTAL}/contracts/<uuid:contract_id>/proposals/<uuid:proposal_id>/reject", "POST"): Call(
        body=lambda _ids: {"reason": "Too slow"}),
    (f"{PORTAL}/contracts/<uuid:contract_id>/proposals/<uuid:proposal_id>/counter", "POST"): Call(
        body=lambda _ids: {"changes": {"payment_terms_days": 40}}),
    (f"{PORTAL}/notices", "GET"): Call(),
    (f"{PORTAL}/disputes", "GET"): Call(),
    # No id in the path: the contract is in the body, and one that is not the caller's is invalid input (422).
    (f"{PORTAL}/disputes", "POST"): Call(body=lambda ids: _dispute_body(ids["contract_id"]),
                                         body_ids=("contract_id",), foreign_status=422),
    (f"{PORTAL}/disputes/<uuid:dispute_id>", "GET"): Call(),
    (f"{PORTAL}/disputes/<uuid:dispute_id>/escalation", "POST"): Call(headers={"If-Match": 'W/"1"'}),
    (f"{PORTAL}/disputes/<uuid:dispute_id>/messages", "GET"): Call(),
    (f"{PORTAL}/disputes/<uuid:dispute_id>/messages", "POST"): Call(body=lambda _ids: {"body": "Pallets 3 to 7."}),
    (f"{PORTAL}/deliveries", "GET"): Call(),
    (f"{PORTAL}/deliveries/<uuid:delivery_id>", "GET"): Call(),
    (f"{PORTAL}/scorecard", "GET"): Call(),
    (f"{PORTAL}/scorecard/trend", "GET"): Call(),
}


def _portal_routes(app) -> set[tuple[str, str]]:
    """Every (rule, method) the app serves under the portal prefix, HEAD and OPTIONS aside."""
    return {(rule.rule, method) for rule in app.url_map.iter_rules() if rule.rule.startswith(PORTAL)
            for method in rule.methods - {"HEAD", "OPTIONS"}}


def _path(rule: str, ids: dict[str, str]) -> str:
    return PARAMETER.sub(lambda m: ids[m.group(1)], rule)


def _names(rule: str, method: str) -> list[str]:
    """The ids a call on (rule, method) names: its path parameters and the ids in its body."""
    return [*PARAMETER.findall(rule), *CALLS[(rule, method)].body_ids]


def _call(client, rule: str, method: str, *, ids: dict[str, str], headers):
    """Call one (rule, method) with the path and the body filled from `ids`."""
    call = CALLS[(rule, method)]
    body = call.body(ids) if call.body else None
    return client.open(_path(rule, ids), method=method, headers={**headers, **call.headers}, json=body)


# -- the two partners -----------------------------------------------------------------------------------------

def _tenant(api, client, name: str) -> Tenant:
    """A partner with a contract whose notice deadline is 20 days ahead (so it is in the notices), a delivery
    recorded internally, and a dispute it opened through the portal."""
    partner = api.partner(f"Partner {name}", status="active")
    tenant = Tenant(partner, identity_headers(kind="partner", partner_id=partner["id"], key_id=f"key-{name}"))
    today = datetime.now(UTC).date()
    contract = api.contract(partner["id"], title=f"{name} contract",
                            effective_from=(today - timedelta(days=10)).isoformat(),
                            effective_to=(today + timedelta(days=50)).isoformat(), notice_period_days=30)
    tenant.ids["contract_id"] = contract["id"]
    r = client.post(f"/api/v1/partners/{tenant.id}/deliveries", headers=RW, json=_delivery_body(f"{name}-1"))
    assert r.status_code == 201, r.text
    tenant.ids["delivery_id"] = r.json["id"]
    r = client.post(f"{PORTAL}/disputes", headers=tenant.headers, json=_dispute_body(contract["id"]))
    assert r.status_code == 201, r.text
    tenant.ids["dispute_id"] = r.json["id"]
    return tenant


@pytest.fixture
def tenants(api, client):
    """Partners A and B; A has also proposed a change to its contract through the portal (open, terms v1)."""
    a, b = _tenant(api, client, "A"), _tenant(api, client, "B")
    r = client.post(f"{PORTAL}/contracts/{a.ids['contract_id']}/proposals", headers=a.headers,
                    json={"changes": {"payment_terms_days": 45}, "message": "Net 45, please"})
    assert r.status_code == 201, r.text
    a.ids["proposal_id"] = r.json["id"]
    return a, b


def _state(app) -> dict:
    """What a refused call must leave alone: row counts, and the status and version of every record it could move."""
    with app.extensions["crm.runtime"].session_factory() as s:
        counts = {model.__name__: s.scalar(select(func.count()).select_from(model))
                  for model in (Partner, Contract, ContractTerms, Proposal, ContractNotice, Delivery, Dispute,
                                DisputeMessage, OutboxMessage, IdempotencyRecord)}
        rows = {
            "proposals": s.execute(select(Proposal.id, Proposal.status, Proposal.version)
                                   .order_by(Proposal.id)).all(),
            "disputes": s.execute(select(Dispute.id, Dispute.status, Dispute.version).order_by(Dispute.id)).all(),
            "contracts": s.execute(select(Contract.id, Contract.current_version).order_by(Contract.id)).all(),
            "partners": s.execute(select(Partner.id, Partner.status, Partner.version).order_by(Partner.id)).all(),
        }
    return {**counts, **rows}


def _is_problem(response, status: int) -> bool:
    return response.status_code == status and response.mimetype == "application/problem+json"


# -- the table covers the URL map -------------------------------------------------------------------------------

def test_every_portal_route_is_in_the_table(app):
    served = _portal_routes(app)
    missing = sorted(served - set(CALLS))
    assert not missing, f"portal routes missing from CALLS (add what a valid call needs): {missing}"
    stale = sorted(set(CALLS) - served)
    assert not stale, f"CALLS names routes the app no longer serves: {stale}"


# -- who may call at all -----------------------------------------------------------------------------------------

def test_every_portal_route_refuses_a_call_without_identity(app, client, tenants):
    a, _b = tenants
    before = _state(app)
    refused = [f"{method} {rule}: {r.status_code}" for rule, method in sorted(_portal_routes(app))
               if not _is_problem(r := _call(client, rule, method, ids=a.ids, headers={}), 401)]
    assert not refused, "not a 401 problem without an identity:\n" + "\n".join(refused)
    assert _state(app) == before


@pytest.mark.parametrize("key", [RW, ADMIN, EVERY_PARTNERS_SCOPE], ids=["read-write", "admin", "partners-star"])
def test_every_portal_route_refuses_an_internal_key(app, client, tenants, key):
    a, _b = tenants
    before = _state(app)
    refused = [f"{method} {rule}: {r.status_code}" for rule, method in sorted(_portal_routes(app))
               if not _is_problem(r := _call(client, rule, method, ids=a.ids, headers=key), 403)]
    assert not refused, "not a 403 problem for an internal key:\n" + "\n".join(refused)
    assert _state(app) == before


def test_every_portal_route_refuses_a_suspended_partner_until_it_is_active_again(app, client, tenants):
    a, b = tenants
    r = client.patch(f"/api/v1/partners/{a.id}", headers=RW, json={"status": "suspended"})
    assert r.status_code == 200, r.text
    before = _state(app)
    answers = {(rule, method): _call(client, rule, method, ids=a.ids, headers=a.headers)
               for rule, method in sorted(_portal_routes(app))}
    wrong = [f"{method} {rule}: {r.status_code}" for (rule, method), r in answers.items()
             if not (_is_problem(r, 403) and r.json.get("partner_status") == "suspended")]
    assert not wrong, "not a 403 naming the suspension:\n" + "\n".join(wrong)
    assert _state(app) == before
    # B keeps its portal while A is suspended, and A gets its own back once active.
    assert client.get(f"{PORTAL}/me", headers=b.headers).status_code == 200
    assert client.patch(f"/api/v1/partners/{a.id}", headers=RW, json={"status": "active"}).status_code == 200
    assert client.get(f"{PORTAL}/disputes/{a.ids['dispute_id']}", headers=a.headers).status_code == 200


# -- another partner's records ---------------------------------------------------------------------------------

def _same_problem(foreign, absent, foreign_ids: dict[str, str], missing_ids: dict[str, str]) -> bool:
    """The two problems differ only by the ids they name: the answer does not reveal that A's records exist."""
    def masked(response) -> dict:
        problem = {k: v for k, v in response.json.items() if k != "request_id"}  # differs on every request
        text = json.dumps(problem, sort_keys=True)
        for value in {*foreign_ids.values(), *missing_ids.values()}:
            text = text.replace(value, "<id>")
        return {"status": response.status_code, "mimetype": response.mimetype, "body": text}
    return masked(foreign) == masked(absent)


def _variants(names: list[str], a: Tenant, b: Tenant) -> list[tuple[dict[str, str], dict[str, str]]]:
    """(ids naming A's records, ids naming no record) pairs for a call: all of A's ids, and where the call names
    a contract and something under it, B's own contract with A's record under it."""
    missing = {name: str(uuid.uuid4()) for name in names}
    pairs = [({name: a.ids[name] for name in names}, missing)]
    if "contract_id" in names and len(names) > 1:
        own = {"contract_id": b.ids["contract_id"]}
        pairs.append(({**{n: a.ids[n] for n in names}, **own}, {**missing, **own}))
    return pairs


def test_another_partners_ids_are_answered_exactly_like_missing_ones_on_every_route(app, client, tenants):
    a, b = tenants
    before = _state(app)
    wrong = []
    for rule, method in sorted(_portal_routes(app)):
        names = _names(rule, method)
        if not names:
            continue  # the call names nothing of A's; the next test reads what these routes show B
        for foreign_ids, missing_ids in _variants(names, a, b):
            foreign = _call(client, rule, method, ids=foreign_ids, headers=b.headers)
            absent = _call(client, rule, method, ids=missing_ids, headers=b.headers)
            if not (_is_problem(foreign, CALLS[(rule, method)].foreign_status)
                    and _same_problem(foreign, absent, foreign_ids, missing_ids)):
                wrong.append(f"{method} {rule} with {foreign_ids}: {foreign.status_code} "
                             f"{foreign.get_data(as_text=True).strip()} / missing ids: {absent.status_code} "
                             f"{absent.get_data(as_text=True).strip()}")
    assert not wrong, "B on A's records is not answered like records that do not exist:\n" + "\n".join(wrong)
    assert _state(app) == before


def test_the_routes_without_an_id_show_b_only_its_own_records(app, client, tenants):
    a, b = tenants
    answers = {rule: client.get(rule, headers=b.headers) for rule, method in sorted(_portal_routes(app))
               if method == "GET" and not PARAMETER.search(rule)}
    assert {rule: r.status_code for rule, r in answers.items()} == dict.fromkeys(answers, 200)
    leaked = {(rule, i) for rule, r in answers.items() for i in a.every_id() if i in r.get_data(as_text=True)}
    assert leaked == set(), "A's ids in B's answers"

    assert answers[f"{PORTAL}/me"].json["id"] == b.id
    for rule, key, id_name in ((f"{PORTAL}/contracts", "id", "contract_id"),
                               (f"{PORTAL}/notices", "contract_id", "contract_id"),
                               (f"{PORTAL}/disputes", "id", "dispute_id"),
                               (f"{PORTAL}/deliveries", "id", "delivery_id")):
        assert [item[key] for item in answers[rule].json["items"]] == [b.ids[id_name]], rule
    # The scorecard is B's as the internal side computes it for B.
    for suffix in ("scorecard", "scorecard/trend"):
        internal = client.get(f"/api/v1/partners/{b.id}/{suffix}", headers=READ)
        assert internal.status_code == 200 and answers[f"{PORTAL}/{suffix}"].json == internal.json, suffix
