"""One OpenAPI document from the gateway's and the upstreams' specs."""
from __future__ import annotations

from services.gateway.aggregate import merge_openapi, probe_all
from services.gateway.routes import RouteTable

TABLE = RouteTable.from_mapping({"/api/v1/leads": "leads", "/api/v1/contacts": "contacts"})


def _serves(path, upstream):
    route = TABLE.match(path)
    return route is not None and route.upstream == upstream


def _spec(paths, schemas, tags=()):
    return {"openapi": "3.0.3", "paths": paths, "components": {"schemas": schemas},
            "tags": [{"name": t} for t in tags]}


def test_paths_schemas_and_tags_of_every_upstream_are_merged():
    own = _spec({"/api/v1/admin/keys": {"get": {}}}, {"Key": {"type": "object"}}, ["admin-keys"])
    leads = _spec({"/api/v1/leads": {"get": {"$ref": "#/components/schemas/Lead"}}}, {"Lead": {"type": "object"}}, ["leads"])
    merged = merge_openapi(own, {"leads": leads}, _serves)
    assert set(merged["paths"]) == {"/api/v1/admin/keys", "/api/v1/leads"}
    assert set(merged["components"]["schemas"]) == {"Key", "Lead"}
    assert [t["name"] for t in merged["tags"]] == ["admin-keys", "leads"]
    assert "Lead" not in own["components"]["schemas"], "the gateway's own spec is not modified"


def test_paths_the_gateway_does_not_route_to_that_upstream_are_left_out():
    contacts = _spec({"/api/v1/contacts": {}, "/api/v1/leads": {}, "/internal/debug": {}}, {})
    merged = merge_openapi(_spec({}, {}), {"contacts": contacts}, _serves)
    assert set(merged["paths"]) == {"/api/v1/contacts"}


def test_a_schema_name_two_services_define_differently_is_renamed_with_its_references():
    error = {"type": "object", "properties": {"code": {"type": "integer"}}}
    leads = _spec({"/api/v1/leads": {"get": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                  {"Error": error, "Page": {"items": {"$ref": "#/components/schemas/Error"}}})
    contacts = _spec({"/api/v1/contacts": {"get": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                     {"Error": {"type": "string"}})
    merged = merge_openapi(_spec({}, {}), {"leads": leads, "contacts": contacts}, _serves)
    schemas = merged["components"]["schemas"]
    assert schemas["Error"] == error
    assert schemas["ContactsError"] == {"type": "string"}
    assert merged["paths"]["/api/v1/contacts"]["get"]["schema"]["$ref"] == "#/components/schemas/ContactsError"
    assert merged["paths"]["/api/v1/leads"]["get"]["schema"]["$ref"] == "#/components/schemas/Error"


def test_identical_schemas_are_shared_not_duplicated():
    same = {"type": "object"}
    merged = merge_openapi(_spec({}, {"Error": same}), {"leads": _spec({}, {"Error": dict(same)})}, _serves)
    assert list(merged["components"]["schemas"]) == ["Error"]


def test_probes_run_together_and_report_each_failure_by_name():
    import threading

    barrier = threading.Barrier(3, timeout=2)

    def ok():
        barrier.wait()  # only passes when all three probes run at the same time

    def broken():
        barrier.wait()
        raise ConnectionError("refused")

    results = probe_all({"a": ok, "b": ok, "c": broken}, timeout=3)
    assert results == {"a": None, "b": None, "c": "ConnectionError"}
