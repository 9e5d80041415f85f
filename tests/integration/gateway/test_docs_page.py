"""`/api/docs` is Swagger UI served from the suite's own files: no CDN, no call to a validator service."""
from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from tests.support.auth import identity_headers

pytestmark = pytest.mark.integration

_REFERENCE = re.compile(r"""\b(?:src|href)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)


def references(page: str) -> list[str]:
    """Every URL the page loads a script or a stylesheet from."""
    return _REFERENCE.findall(page)


def check_docs_page(client, headers=None) -> None:
    page = client.get("/api/docs", headers=headers)
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)

    refs = references(html)
    assert refs, "the page loads no scripts or stylesheets"
    for ref in refs:
        parts = urlsplit(ref)
        assert not parts.scheme and not parts.netloc, f"{ref} is on another host"
    assert "://" not in html.replace("http://www.w3.org", ""), "the page names an external URL"
    assert '"validatorUrl": null' in html, "Swagger UI would send the spec's URL to validator.swagger.io"

    kinds = set()
    for ref in refs:
        asset = client.get(ref, headers=headers)
        assert asset.status_code == 200, f"{ref}: {asset.status_code}"
        assert len(asset.data) > 1000, f"{ref} is nearly empty"
        kinds.add(asset.mimetype)
    assert "text/css" in kinds and kinds & {"text/javascript", "application/javascript"}, kinds


def test_the_gateway_docs_page_and_its_assets_are_served_by_the_gateway_without_a_key(client):
    check_docs_page(client)


def test_a_service_serves_its_own_docs_page_and_assets_to_a_caller_with_an_identity(service_app):
    leads = service_app("leads")
    client = leads.test_client()

    check_docs_page(client, headers=identity_headers("leads:read"))
    # Like every service path but the health and metrics endpoints: only through the gateway, with an identity.
    assert client.get("/api/docs").status_code == 401
    assert client.get("/api/docs/assets/swagger-ui.css").status_code == 401


@pytest.mark.parametrize("path", ["/api/docs/assets/index.html", "/api/docs/assets/LICENSE",
                                  "/api/docs/assets/../VERSION", "/api/docs/assets/%2e%2e/VERSION"])
def test_nothing_but_the_three_ui_files_is_served(client, path):
    r = client.get(path)

    assert r.status_code == 404
    assert r.content_type.startswith("application/problem+json")
