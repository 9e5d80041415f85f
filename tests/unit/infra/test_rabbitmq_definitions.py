"""infra/rabbitmq/definitions.json matches what the workers declare, so their declarations never clash."""
from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import re
from urllib.parse import urlsplit

import pytest

from crm.registry import SUITE
from services.common.broker import dlq_name, queue_name, retry_queue_name
from services.common.catalog import EXCHANGE
from services.common.settings import Settings

from .conftest import REPO_ROOT, interpolate

BINDINGS = SUITE.bindings()

RABBITMQ_DIR = REPO_ROOT / "infra" / "rabbitmq"


@pytest.fixture(scope="module")
def generator():
    spec = importlib.util.spec_from_file_location("generate_definitions", RABBITMQ_DIR / "generate_definitions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def definitions() -> dict:
    return json.loads((RABBITMQ_DIR / "definitions.json").read_text())


def test_the_committed_definitions_are_what_the_generator_writes_today(generator):
    committed = (RABBITMQ_DIR / "definitions.json").read_text()
    assert committed == generator.render(), (
        "infra/rabbitmq/definitions.json is stale: run `python infra/rabbitmq/generate_definitions.py`")


def test_every_service_queue_dlq_and_delay_queue_is_predeclared_with_the_workers_arguments(definitions):
    queues = {(q["vhost"], q["name"]): q for q in definitions["queues"]}
    for service in BINDINGS:
        main = queues[("/", queue_name(service))]
        assert main["durable"] and main["arguments"] == {"x-queue-type": "quorum"}
        assert queues[("/", dlq_name(service))]["arguments"] == {"x-queue-type": "quorum"}
        for delay in Settings.retry_delays:
            retry = queues[("/", retry_queue_name(service, delay))]
            assert retry["arguments"] == {
                "x-message-ttl": int(delay * 1000), "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": queue_name(service),
            }
    assert len(queues) == len(BINDINGS) * (2 + len(Settings.retry_delays)), "unexpected extra queues"


def test_the_exchange_and_every_subscription_binding_are_predeclared(definitions):
    assert definitions["exchanges"] == [{
        "name": EXCHANGE, "vhost": "/", "type": "topic", "durable": True, "auto_delete": False,
        "internal": False, "arguments": {},
    }]
    bindings = {(b["source"], b["destination"], b["routing_key"]) for b in definitions["bindings"]}
    assert bindings == {(EXCHANGE, queue_name(s), t) for s, types in BINDINGS.items() for t in types}


def test_the_compose_amqp_user_exists_with_the_password_of_the_url(definitions, crm_services):
    # Importing definitions at boot skips RabbitMQ's default guest user, so the file must carry ours.
    urls = {interpolate(svc["environment"]["AMQP_URL"]) for svc in crm_services.values()}
    assert len(urls) == 1
    url = urlsplit(urls.pop())
    assert url.path in ("/", "/%2F")
    users = {u["name"]: u for u in definitions["users"]}
    user = users[url.username]
    assert user["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    raw = base64.b64decode(user["password_hash"])
    salt, digest = raw[:4], raw[4:]
    assert hashlib.sha256(salt + url.password.encode()).digest() == digest, "AMQP_URL's password does not match"
    assert {"user": url.username, "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"} in definitions["permissions"]
    assert {"name": "/"} in definitions["vhosts"]


def test_rabbitmq_loads_the_definitions_file_the_compose_file_mounts(services):
    conf = (RABBITMQ_DIR / "rabbitmq.conf").read_text()
    loaded = re.search(r"^load_definitions\s*=\s*(\S+)\s*$", conf, re.MULTILINE)
    assert loaded, "rabbitmq.conf must set load_definitions"
    mounts = dict(v.split(":")[:2] for v in services["rabbitmq"]["volumes"] if v.startswith("./"))
    assert mounts.get("./infra/rabbitmq/definitions.json") == loaded.group(1)
    assert mounts.get("./infra/rabbitmq/rabbitmq.conf") == "/etc/rabbitmq/rabbitmq.conf"
    assert services["rabbitmq"]["image"].startswith("rabbitmq:3.13-management")
