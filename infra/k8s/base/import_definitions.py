"""Import the CRM Suite broker topology into RabbitMQ through the management API (the crm-rabbitmq-definitions Job).

Reads the definitions file (generated/rabbitmq-definitions.json, mounted from a ConfigMap) and POSTs it to
/api/definitions with the operator's default user. Importing only adds or updates what the file names, so it
is safe to run again. Any failure exits non-zero and the Job retries with its back-off.

    RABBITMQ_MANAGEMENT_URL=http://crm-rabbitmq:15672 RABBITMQ_USERNAME=... RABBITMQ_PASSWORD=... \
    DEFINITIONS_FILE=/etc/crm/rabbitmq/definitions.json python import_definitions.py
"""
from __future__ import annotations

import base64
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping


def import_definitions(env: Mapping[str, str]) -> int:
    """POST the definitions file; returns the HTTP status. Raises on a malformed file or a refused import."""
    with open(env["DEFINITIONS_FILE"], "rb") as handle:
        body = handle.read()
    json.loads(body)  # refuse a broken file here rather than in the broker's log
    credentials = base64.b64encode(f"{env['RABBITMQ_USERNAME']}:{env['RABBITMQ_PASSWORD']}".encode()).decode()
    request = urllib.request.Request(
        env["RABBITMQ_MANAGEMENT_URL"].rstrip("/") + "/api/definitions", data=body, method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Basic {credentials}"})
    with urllib.request.urlopen(request, timeout=30) as response:  # a 4xx/5xx raises HTTPError
        return response.status


def main() -> int:
    try:
        status = import_definitions(os.environ)
    except urllib.error.HTTPError as exc:
        print(f"definitions refused: HTTP {exc.code}: {exc.read()[:500].decode(errors='replace')}", file=sys.stderr)
        return 1
    except (OSError, ValueError, KeyError) as exc:  # unreachable broker, unreadable file, missing variable
        print(f"definitions not imported: {exc!r}", file=sys.stderr)
        return 1
    print(f"definitions imported (HTTP {status})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
