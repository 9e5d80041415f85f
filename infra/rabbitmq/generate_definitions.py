"""Write infra/rabbitmq/definitions.json from the topology the workers declare (services.common.broker), with the
bindings the suite registry derives from the services' handlers (crm/registry.py).

RabbitMQ loads the file at boot (rabbitmq.conf: load_definitions). The queues must match what
`declare_topology` asks for argument for argument, or the workers' own declarations fail with
PRECONDITION_FAILED. So this script does not describe the topology a second time: it runs
`declare_topology` against a channel that records each call, fills in pika's defaults from the real
BlockingChannel signatures, and translates the calls into definitions.

    .venv/bin/python infra/rabbitmq/generate_definitions.py           # rewrite definitions.json
    .venv/bin/python infra/rabbitmq/generate_definitions.py --check   # exit 1 when the committed file is stale

(It imports the installed `crm` and `services` packages: run it with the project's virtualenv.)

Importing definitions at boot makes RabbitMQ skip its default user and vhost, so the file also carries
the vhost "/" and the compose stack's user. That user's password is a development default: for anything
shared, run the broker with your own user (e.g. the Kubernetes operator) instead of this file.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import inspect
import json
import sys
from pathlib import Path

from pika.adapters.blocking_connection import BlockingChannel

from crm.registry import SUITE
from services.common import broker
from services.common.settings import Settings

DEFINITIONS_FILE = Path(__file__).with_name("definitions.json")
VHOST = "/"
# Development credentials of the compose stack; AMQP_URL in docker-compose.yml uses the same pair.
DEV_USER = "crm"
DEV_PASSWORD = "crm"


class RecordingChannel:
    """Stands in for a pika channel: records declarations with every argument pika would send."""

    RECORDED = ("exchange_declare", "queue_declare", "queue_bind")

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def __getattr__(self, name: str):
        if name not in self.RECORDED:
            # A new kind of declaration in declare_topology needs a translation below; fail loudly.
            raise AttributeError(f"declare_topology called channel.{name}, which this generator cannot translate")
        signature = inspect.signature(getattr(BlockingChannel, name))

        def record(*args, **kwargs):
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            values = dict(bound.arguments)
            values.pop("self")
            self.calls.append((name, values))

        return record


def password_hash(password: str, salt: bytes) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + password))."""
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def build_definitions(retry_delays: tuple[float, ...] = Settings.retry_delays) -> dict:
    """The definitions document for the topology declare_topology builds with `retry_delays`."""
    channel = RecordingChannel()
    broker.declare_topology(channel, SUITE.bindings(), retry_delays)
    exchanges, queues, bindings = [], [], []
    for name, call in channel.calls:
        if call.get("passive"):
            continue  # a passive declare only checks existence
        if name == "exchange_declare":
            exchanges.append({
                "name": call["exchange"], "vhost": VHOST, "type": str(getattr(call["exchange_type"], "value", call["exchange_type"])),
                "durable": call["durable"], "auto_delete": call["auto_delete"], "internal": call["internal"],
                "arguments": call["arguments"] or {},
            })
        elif name == "queue_declare":
            if call["exclusive"]:
                raise ValueError(f"exclusive queue {call['queue']!r} cannot be predeclared")
            queues.append({
                "name": call["queue"], "vhost": VHOST, "durable": call["durable"], "auto_delete": call["auto_delete"],
                "arguments": call["arguments"] or {},
            })
        else:
            bindings.append({
                "source": call["exchange"], "vhost": VHOST, "destination": call["queue"], "destination_type": "queue",
                "routing_key": call["routing_key"] or "", "arguments": call["arguments"] or {},
            })
    # A fixed salt keeps the file reproducible, which the drift test needs; it protects a dev password only.
    salt = hashlib.sha256(f"crm-suite/{DEV_USER}".encode()).digest()[:4]
    return {
        "users": [{
            "name": DEV_USER, "password_hash": password_hash(DEV_PASSWORD, salt),
            "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["administrator"], "limits": {},
        }],
        "vhosts": [{"name": VHOST}],
        "permissions": [{"user": DEV_USER, "vhost": VHOST, "configure": ".*", "write": ".*", "read": ".*"}],
        "topic_permissions": [],
        "parameters": [],
        "global_parameters": [],
        "policies": [],
        "exchanges": exchanges,
        "queues": queues,
        "bindings": bindings,
    }


def render(retry_delays: tuple[float, ...] = Settings.retry_delays) -> str:
    """The definitions as the text committed in definitions.json."""
    return json.dumps(build_definitions(retry_delays), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed file instead of writing it")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = DEFINITIONS_FILE.read_text() if DEFINITIONS_FILE.exists() else ""
        if current != text:
            print(f"{DEFINITIONS_FILE} is stale; run {Path(__file__).name} to regenerate it", file=sys.stderr)
            return 1
        return 0
    DEFINITIONS_FILE.write_text(text)
    print(f"wrote {DEFINITIONS_FILE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
