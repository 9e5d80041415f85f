"""What the benches on a generated contacts database share: a log line, a psycopg connection, and the database
itself (created, migrated and filled, or one kept from an earlier run; dropped at the end unless kept).

The benches import it (`from bench_support import ...`) after putting the repository on sys.path.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg

from crm.registry import SUITE
from tests.support import infra


def log(message: str) -> None:
    """A progress line on stderr, with the time of day (the figures go to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def connect(url: str) -> psycopg.Connection:
    """An autocommit psycopg connection to a service database URL (SQLAlchemy's or libpq's spelling)."""
    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)


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
