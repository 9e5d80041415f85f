"""What the benches share: a log line, a psycopg connection, the CPU of one in-process call and the SQL it sends,
and a generated contacts database (created, migrated and filled, or one kept from an earlier run; dropped at the
end unless kept).

The benches import it (`from bench_support import ...`) after putting the repository on sys.path.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy import event

from crm.registry import SUITE
from tests.support import infra


def log(message: str) -> None:
    """A progress line on stderr, with the time of day (the figures go to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def connect(url: str) -> psycopg.Connection:
    """An autocommit psycopg connection to a service database URL (SQLAlchemy's or libpq's spelling)."""
    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)


def best_cpu_us(operation: Callable[[], None], *, n: int, rounds: int) -> float:
    """CPU microseconds of this process per call of `operation`: the best of `rounds` rounds of `n` calls."""
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(n):
            operation()
        best = min(best, (time.process_time() - started) / n * 1e6)
    return best


def statements_sent(engine, operation: Callable[[], None]) -> list[str]:
    """The SQL statements one call of `operation` sends through `engine`, in order."""
    sent: list[str] = []

    def listener(_conn, _cursor, statement, *_args) -> None:
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", listener)
    try:
        operation()
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    return sent


@contextmanager
def contacts_database(name: str, *, existing: str | None, keep: bool, fill: Callable[[str], None]) -> Iterator[str]:
    """The URL of `existing`, as it is, or of a new database (labelled `name`) migrated to head and filled by `fill`.

    A new database is dropped when the block ends, unless `keep`; an existing one is always kept.
    """
    url = existing
    if url is None:
        url = infra.create_database(name)
        log(f"database {url}")
        SUITE.migrate("contacts", url)
        fill(url)
    try:
        yield url
    finally:
        if keep or existing is not None:
            log(f"kept {url}")
        else:
            infra.drop_database(url)
