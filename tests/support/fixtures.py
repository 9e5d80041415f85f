"""The `suite` fixture: every process of CRM Suite started for one test module."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.support import infra
from tests.support.suite import SERVICES, Suite


@contextlib.contextmanager
def running_suite(workdir: Path, *, create_database: Callable[[str], str] = infra.create_database,
                  drop_database: Callable[[str], None] | None = infra.drop_database, **options) -> Iterator[Suite]:
    """A started suite on databases and a vhost of its own (`.vhost`), stopped and cleaned up afterwards.

    `options` go to Suite (replicas, settings). A test on a PostgreSQL of its own passes that server's
    `create_database` and `drop_database=None` (its databases go with the server).
    """
    vhost, amqp_url = infra.create_vhost()
    dbs = {svc: create_database(svc) for svc in SERVICES}
    suite = Suite(workdir, amqp_url, dbs, **options)
    suite.vhost = vhost
    try:
        suite.start_all()
        yield suite
    finally:
        suite.stop_all()
        if drop_database is not None:
            for url in dbs.values():
                drop_database(url)
        infra.delete_vhost(vhost)


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """A running suite on its own databases and vhost; stopped and cleaned up after the module."""
    with running_suite(tmp_path_factory.mktemp("suite")) as s:
        yield s


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
