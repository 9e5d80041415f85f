"""Fixtures of the loyalty integration tests: the service on a fresh PostgreSQL database of the test's own."""
from __future__ import annotations

import pytest



@pytest.fixture
def loyalty(service_app):
    return service_app("loyalty")


@pytest.fixture
def client(loyalty):
    return loyalty.test_client()

