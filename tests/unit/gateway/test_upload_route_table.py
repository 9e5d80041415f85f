"""Upload routes: declared once per service in the suite registry, matched by the gateway's route table, and the
same set as the views that take uploads (`upload_arguments`) in the services themselves."""
from __future__ import annotations

import json
import re

import pytest

from crm.registry import SUITE, Registry, ServiceEntry
from services.common.web import declared_upload_route
from services.gateway.routes import RouteTable, RouteTableError
from tests.support.infra import IDENTITY_PUBLIC_KEY

_CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^:<>]+)>")  # <uuid:contact_id> -> {contact_id}


def test_the_registry_names_the_import_route_and_the_default_table_derives_it():
    assert SUITE.upload_routes() == ("/api/v1/contacts/imports",)
    table = RouteTable.from_mapping(SUITE.route_map(), uploads=SUITE.upload_routes())
    assert table.takes_upload("/api/v1/contacts/imports")
    for path in ("/api/v1/contacts", "/api/v1/contacts/imports/7", "/api/v1/contacts/importsx", "/api/v1/leads"):
        assert not table.takes_upload(path), path


def test_a_path_template_matches_one_segment_per_parameter():
    table = RouteTable.from_mapping({"/api/v1/contacts": "contacts"}, uploads=["/api/v1/contacts/{contact_id}/photo"])
    assert table.takes_upload("/api/v1/contacts/8d1f/photo")
    assert not table.takes_upload("/api/v1/contacts/8d1f/x/photo")
    assert not table.takes_upload("/api/v1/contacts//photo")


def test_an_upload_route_outside_the_services_routes_is_refused():
    with pytest.raises(ValueError, match="not under one of its routes"):
        Registry((ServiceEntry("gateway", 1, "g"), ServiceEntry("a", 2, "a", routes=("/api/v1/a",),
                                                                  upload_routes=("/api/v1/b/files",))))
    with pytest.raises(RouteTableError, match="upload route '/api/v1/b/files'"):
        RouteTable.from_mapping({"/api/v1/a": "a"}, uploads=["/api/v1/b/files"])


def test_a_route_table_file_may_name_upload_routes(tmp_path):
    path = tmp_path / "routes.json"
    path.write_text(json.dumps({"routes": {"/api/v1/contacts": "contacts"}, "uploads": ["/api/v1/contacts/imports"]}))
    assert RouteTable.load(str(path)).takes_upload("/api/v1/contacts/imports")
    path.write_text(json.dumps({"routes": {"/api/v1/contacts": "contacts"}, "uploads": "/api/v1/contacts/imports"}))
    with pytest.raises(RouteTableError, match="'uploads' must be a list"):
        RouteTable.load(str(path))


def _declared_uploads(name: str, tmp_path) -> set[str]:
    """The paths (as templates) of the views of one service's app that take uploads."""
    settings = SUITE.settings(name, {"DATABASE_URL": f"sqlite:///{tmp_path}/{name}.db",  # never opened
                                     "CRM_IDENTITY_PUBLIC_KEY": IDENTITY_PUBLIC_KEY, "CRM_LOG_LEVEL": "WARNING"})
    app = SUITE.create_app(name, settings)
    try:
        return {_CONVERTER.sub(r"{\1}", rule.rule) for rule in app.url_map.iter_rules()
                for method in rule.methods if declared_upload_route(app.view_functions[rule.endpoint], method)}
    finally:
        app.extensions["crm.runtime"].engine.dispose()


@pytest.mark.parametrize("entry", SUITE.upstreams, ids=lambda e: e.name)
def test_every_upload_view_of_a_service_is_an_upload_route_of_the_registry_and_no_other(entry, tmp_path):
    # Otherwise the gateway would refuse (415, 1 MiB) what the service takes, or let large bodies through to a
    # service that refuses them.
    assert _declared_uploads(entry.name, tmp_path) == set(entry.upload_routes)
