"""Fixtures of the loyalty integration tests: the service on a fresh PostgreSQL database of the test's own."""
from __future__ import annotations

import pytest

from crm.registry import SUITE
from services.loyalty.app import create_app


@pytest.fixture
def loyalty_url(make_database):
    url = make_database("loyalty")
    SUITE.migrate("loyalty", url)
    return url


@pytest.fixture
def loyalty(loyalty_url, make_settings):
    app = create_app(make_settings("loyalty", loyalty_url))
    yield app
    app.extensions["crm.runtime"].engine.dispose()


@pytest.fixture
def client(loyalty):
    return loyalty.test_client()

