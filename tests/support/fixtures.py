"""The `suite` fixture: every process of CRM Suite started for one test module."""
from __future__ import annotations

import pytest
import requests

from tests.support import infra
from tests.support.suite import SERVICES, Suite


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """A running suite on its own databases and vhost; stopped and cleaned up after the module."""
    vhost, amqp_url = infra.create_vhost()
    dbs = {svc: infra.create_database(svc) for svc in SERVICES}
    s = Suite(tmp_path_factory.mktemp("suite"), amqp_url, dbs)
    s.database_urls = dbs
    try:
        s.start_all()
        yield s
    finally:
        s.stop_all()
        for url in dbs.values():
            infra.drop_database(url)
        infra.delete_vhost(vhost)


class Client:
    """A small HTTP client for the gateway with an API key."""

    def __init__(self, base_url: str, key: str | None):
        self.base_url = base_url
        self.session = requests.Session()
        if key:
            self.session.headers["Authorization"] = f"Bearer {key}"

    def request(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 30)
        return self.session.request(method, self.base_url + path, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def patch(self, path, **kw):
        return self.request("PATCH", path, **kw)


@pytest.fixture(scope="module")
def internal_client(suite):
    key = suite.create_key(scopes="leads:*,contacts:*,loyalty:*,partners:*", name="e2e")
    return Client(suite.gateway_url, key)
