"""Fakes with the real interfaces of the key use cases' ports: a session slice, a key source, clocks."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from services.gateway import keys


class FakeSession:
    """The slice of a SQLAlchemy session the key use cases touch, over a list of ApiKey rows."""

    def __init__(self, rows=()):
        self.rows = list(rows)
        self.flushes = 0

    def add(self, row):
        self.rows.append(row)

    def flush(self):
        self.flushes += 1
        for row in self.rows:
            row.id = row.id or uuid.uuid4()

    def scalar(self, stmt):
        # The only lookup is "is there any key" (ensure_admin_key).
        return 1 if self.rows else None


class FakeKeySource:
    """A KeySource over ApiKey rows in memory that counts what the cache asks of it."""

    def __init__(self):
        self.rows = []
        self.version = 0
        self.loads = 0
        self.revision_reads = 0
        self.uses: list[datetime] = []

    def create(self, *scopes: str, partner_id=None, name: str = "app"):
        """Create a key through the use case; returns (row, plaintext)."""
        session = FakeSession()
        key, plaintext = keys.create_key(session, name=name, scopes=scopes, partner_id=partner_id)
        self.rows.append(key)
        return key, plaintext

    def revoke(self, row, when: datetime) -> None:
        """What revoke_key does to the database: the row and the revision counter, together."""
        row.revoked_at = when
        self.version += 1

    # -- the KeySource interface ---------------------------------------------------------------------------
    def revision(self) -> int:
        self.revision_reads += 1
        return self.version

    def load(self, prefix: str):
        self.loads += 1
        row = next((r for r in self.rows if r.prefix == prefix), None)
        return (keys.KeyRecord.of(row) if row is not None else None), self.version

    def record_use(self, key_id, now: datetime) -> None:
        self.uses.append(now)
        for row in self.rows:
            if row.id == key_id and keys.last_use_due(row.last_used_at, now):
                row.last_used_at = now


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeWallClock:
    """A UTC wall clock that moves only when told to."""

    def __init__(self):
        self.now = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
