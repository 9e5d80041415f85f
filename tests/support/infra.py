"""Real PostgreSQL databases and RabbitMQ vhosts of the tests' own, so runs never share state."""
from __future__ import annotations

import os
import socket
import subprocess
import uuid
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg

from services.common.identity import generate_keypair

DEFAULT_TEST_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_TEST_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
# One identity key pair per test run: the gateway (and tests minting tokens as it would) sign with the private
# key; every service gets only the public key.
IDENTITY_PRIVATE_KEY, IDENTITY_PUBLIC_KEY = generate_keypair()


def admin_database_url() -> str:
    return os.environ.get("TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def _psycopg_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def create_database(label: str, *, template: str | None = None) -> str:
    """Create a PostgreSQL database and return its SQLAlchemy URL: empty, or a copy of `template` (a URL)."""
    name = f"crmt_{uuid.uuid4().hex[:10]}_{label}"
    copy_of = f' TEMPLATE "{urlsplit(template).path.lstrip("/")}"' if template else ""
    with psycopg.connect(_psycopg_url(admin_database_url()), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{copy_of}')
    return _with_database(admin_database_url(), name).replace("postgresql://", "postgresql+psycopg://", 1)


def drop_database(url: str) -> None:
    """Drop a database created by create_database, disconnecting stragglers."""
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(_psycopg_url(admin_database_url()), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def amqp_base_url() -> str:
    return os.environ.get("TEST_AMQP_URL", DEFAULT_TEST_AMQP_URL)


def create_vhost() -> tuple[str, str]:
    """Create a RabbitMQ vhost for this test run; returns (vhost, amqp url)."""
    vhost = f"crm-test-{uuid.uuid4().hex[:10]}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    parts = urlsplit(amqp_base_url())
    return vhost, urlunsplit((parts.scheme, parts.netloc, "/" + quote(vhost, safe=""), parts.query, parts.fragment))


def delete_vhost(vhost: str) -> None:
    try:
        _rabbitmqctl("delete_vhost", vhost)
    except subprocess.CalledProcessError:
        pass


def free_port() -> int:
    """An unused TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
