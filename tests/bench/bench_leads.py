"""The leads service's own use cases run inside the bench process, on the bench suite's leads database.

The suite bench commits lead conversions here (with `services.leads.service`, exactly as the web process
would) so the time to commit them is not limited by HTTP, and reads back when each event was written.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg

CONVERTERS = 4  # threads committing conversions (their database round trips overlap)


def pg_url(sqlalchemy_url: str) -> str:
    """The psycopg form of a SQLAlchemy PostgreSQL URL."""
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)


class LeadsInProcess:
    """The leads service's own use cases, run in this process on the suite's leads database."""

    def __init__(self, suite):
        from services.common.settings import from_env
        from services.leads import app as leads_app

        self.runtime = leads_app.build(from_env("leads", suite.env))
        self.committed: dict[str, float] = {}  # lead id -> when its conversion had committed (epoch seconds)

    def create_leads(self, n: int, tag: str) -> list[uuid.UUID]:
        """Insert n fresh leads in one statement (no events: only their conversion is measured)."""
        from sqlalchemy import insert

        from services.leads.models import Lead

        ids = [uuid.uuid4() for _ in range(n)]
        rows = [{"id": i, "email": f"conv-{tag}-{k}@bench.example", "email_normalized": f"conv-{tag}-{k}@bench.example",
                 "first_name": "Conv", "last_name": str(k), "company": "Bench Ltd", "source": "bench"}
                for k, i in enumerate(ids)]
        with self.runtime.session_factory() as session:
            for at in range(0, n, 5000):
                session.execute(insert(Lead), rows[at:at + 5000])
            session.commit()
        return ids

    def convert(self, lead_id: uuid.UUID) -> None:
        from services.leads import service

        service.convert_lead(self.runtime.uow(), lead_id)

    def convert_all(self, ids: list[uuid.UUID], *, rate: float | None = None) -> float:
        """Convert every lead (at `rate` per second when given); returns the achieved conversions/s."""
        lock = threading.Lock()
        position = iter(range(len(ids)))
        start = time.perf_counter() + 0.05

        def worker():
            while True:
                with lock:
                    i = next(position, None)
                if i is None:
                    return
                if rate:
                    delay = start + i / rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                self.convert(ids[i])
                self.committed[str(ids[i])] = time.time()  # convert() returned: its transaction committed

        with ThreadPoolExecutor(CONVERTERS) as pool:
            for f in [pool.submit(worker) for _ in range(CONVERTERS)]:
                f.result()
        return len(ids) / (time.perf_counter() - start)

    def sample_payload(self) -> bytes:
        """The CloudEvents JSON of one crm.lead.converted, as the relay publishes it."""
        lead_id = self.create_leads(1, f"sample-{uuid.uuid4().hex[:8]}")[0]
        self.convert(lead_id)
        with psycopg.connect(pg_url(self.runtime.settings.database_url)) as conn:
            return conn.execute("SELECT payload FROM outbox WHERE event_type = 'crm.lead.converted' "
                                "ORDER BY seq DESC LIMIT 1").fetchone()[0].encode()

    def outbox_times(self, ids: list[uuid.UUID]) -> dict[str, float]:
        """lead id -> when its crm.lead.converted row was written (epoch seconds)."""
        wanted = {str(i) for i in ids}
        out = {}
        with psycopg.connect(pg_url(self.runtime.settings.database_url)) as conn:
            for payload, created in conn.execute(
                    "SELECT payload, created_at FROM outbox WHERE event_type = 'crm.lead.converted'"):
                lead_id = json.loads(payload)["data"]["lead_id"]
                if lead_id in wanted:
                    out[lead_id] = created.timestamp()
        return out
