"""The route table: config, longest prefix wins, matches only at segment boundaries."""
from __future__ import annotations

import json

import pytest

from crm.registry import SUITE
from services.gateway.routes import RouteTable, RouteTableError, under

DESIGN_ROUTES = {
    "contacts": ["/api/v1/contacts", "/api/v1/accounts", "/api/v1/segments", "/api/v1/analytics"],
    "leads": ["/api/v1/leads", "/api/v1/campaigns", "/api/v1/offers", "/api/v1/triggers", "/api/v1/plugins"],
    "loyalty": ["/api/v1/loyalty"],
    "partners": ["/api/v1/partners", "/api/v1/contracts", "/api/v1/partner-portal"],
}


def _upstream(table: RouteTable, path: str):
    route = table.match(path)
    return route.upstream if route else None


def test_the_registry_table_routes_every_prefix_of_the_design():
    table = RouteTable.from_mapping(SUITE.route_map())
    for upstream, prefixes in DESIGN_ROUTES.items():
        for prefix in prefixes:
            assert _upstream(table, prefix) == upstream
            assert _upstream(table, prefix + "/some/thing") == upstream
    assert table.upstreams == ["contacts", "leads", "loyalty", "partners"]


def test_a_prefix_matches_only_at_a_path_segment_boundary():
    table = RouteTable.from_mapping({"/api/v1/leads": "leads"})
    assert _upstream(table, "/api/v1/leads") == "leads"
    assert _upstream(table, "/api/v1/leads/") == "leads"
    assert _upstream(table, "/api/v1/leads/42/convert") == "leads"
    assert _upstream(table, "/api/v1/leadsx") is None
    assert _upstream(table, "/api/v1/lead") is None
    assert _upstream(table, "/api/v1") is None


def test_the_longest_matching_prefix_wins_whatever_the_file_order():
    table = RouteTable.from_mapping({"/api/v1/partner": "a", "/api/v1/partner/portal": "b", "/api/v1": "c"})
    assert _upstream(table, "/api/v1/partner/portal/terms") == "b"
    assert _upstream(table, "/api/v1/partner/7") == "a"
    assert _upstream(table, "/api/v1/partners") == "c"  # "/api/v1/partner" is not a segment prefix of it


def test_partners_and_the_partner_portal_are_separate_segments():
    table = RouteTable.from_mapping(SUITE.route_map())
    assert not under("/api/v1/partner-portal-evil/x", "/api/v1/partner-portal")
    assert under("/api/v1/partner-portal/contracts", "/api/v1/partner-portal")
    assert _upstream(table, "/api/v1/partners-x") is None


def test_a_table_file_given_by_path_replaces_the_registry_one(tmp_path):
    path = tmp_path / "routes.json"
    path.write_text(json.dumps({"routes": {"/api/v1/leads": "leads-v2"}, "optional": ["leads-v2"]}))
    table = RouteTable.load(str(path))
    assert _upstream(table, "/api/v1/leads/1") == "leads-v2"
    assert _upstream(table, "/api/v1/contacts") is None
    assert table.optional == {"leads-v2"}


@pytest.mark.parametrize("content", ["not json", "[]", '{"routes": {}}', '{"routes": {"api/v1/x": "x"}}',
                                     '{"routes": {"/api/v1/x": ""}}', '{"routes": {"/a": "a", "/a/": "b"}}'])
def test_a_malformed_table_stops_start_up_naming_the_file(tmp_path, content):
    path = tmp_path / "routes.json"
    path.write_text(content)
    with pytest.raises(RouteTableError, match="routes.json"):
        RouteTable.load(str(path))


def test_a_missing_table_file_names_the_variable(tmp_path):
    with pytest.raises(RouteTableError, match="CRM_GATEWAY_ROUTES"):
        RouteTable.load(str(tmp_path / "absent.json"))
