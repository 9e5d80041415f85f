"""Whether a suite has drained: every outbox row published, every queue (retry queues and DLQs too) empty."""
from __future__ import annotations

import subprocess

import psycopg

from crm.registry import SUITE
from tests.support.suite import wait_until


def psycopg_url(url: str) -> str:
    """The libpq form of a SQLAlchemy PostgreSQL URL."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def sql(url: str, query: str, *args) -> list[tuple]:
    """Rows of one query on a service database (a connection of its own, closed after)."""
    with psycopg.connect(psycopg_url(url)) as conn:
        return conn.execute(query, args).fetchall()


def unpublished(database_urls: dict[str, str]) -> dict[str, int]:
    """Service -> outbox rows not yet confirmed by the broker (services with a worker only)."""
    return {e.name: sql(database_urls[e.name], "SELECT count(*) FROM outbox WHERE published_at IS NULL")[0][0]
            for e in SUITE.workers}


def queue_depths(vhost: str) -> dict[str, tuple[int, int]]:
    """Queue -> (ready, unacknowledged) messages of every queue in `vhost`."""
    out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "messages_ready",
                          "messages_unacknowledged"], check=True, capture_output=True, text=True, timeout=60).stdout
    depths = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            depths[parts[0]] = (int(parts[1]), int(parts[2]))
    return depths


def drained_state(database_urls: dict[str, str], vhost: str) -> dict | None:
    """None once nothing waits anywhere; else what still waits (outbox rows, non-empty queues)."""
    backlog = {svc: n for svc, n in unpublished(database_urls).items() if n}
    queues = {name: depth for name, depth in queue_depths(vhost).items() if any(depth)}
    return {"outbox": backlog, "queues": queues} if backlog or queues else None


def wait_drained(database_urls: dict[str, str], vhost: str, *, timeout: float = 120) -> None:
    """Wait until every outbox is published and every queue of `vhost` is empty, twice in a row a second apart
    (a message between a retry queue and its service queue is in neither for a moment)."""
    streak = []

    def settled():
        state = drained_state(database_urls, vhost)
        streak.append(state)
        return len(streak) >= 2 and streak[-1] is None and streak[-2] is None

    wait_until(settled, timeout=timeout, interval=1.0, message="every outbox published and every queue empty")


def assert_drained(database_urls: dict[str, str], vhost: str) -> None:
    """Fail, showing what waits, unless every outbox is published and every queue is empty."""
    state = drained_state(database_urls, vhost)
    assert state is None, f"not drained: {state}"
