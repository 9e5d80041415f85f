"""Per-request CPU of `GET /api/v1/contacts/{id}` in the contacts web process, in process (issue 6 (a)).

Run with `.venv/bin/python tests/bench/bench_get_contact.py 2>/dev/null` (the app's JSON log lines go to
stderr). It creates a PostgreSQL database of its own, migrated to head, with one contact that has purchases in
two currencies and a completed analytics snapshot in the base currency (the record's every block filled), builds
the contacts app as `crm run` would (INFO logging, metrics, identity verification) and calls the view through
`app.test_client()` BENCH_GET_N times (default 5,000) with a valid identity token; then the same for the
minimal Flask view of the suite bench (bench_minimal_app.py), the framework ceiling. No sockets or gunicorn:
what is measured is the WSGI app's own work, CPU of the whole process (the log listener thread included) per
request, best of BENCH_GET_REPEAT rounds (default 3). Also prints the SQL statements one GET runs and a cProfile
top 20 (BENCH_GET_PROFILE=0 to skip), and the answers (JSON, vCard, 404) in full, whose ids are fixed, so two runs'
outputs can be diffed to check that a change moved no byte (only timestamps and request ids differ).
"""
from __future__ import annotations

import cProfile
import io
import os
import pstats
import sys
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "bench"))

from bench_support import best_cpu_us, statements_sent  # noqa: E402

from crm.registry import SUITE  # noqa: E402
from services.contacts import purchase_facts  # noqa: E402
from services.contacts.analytics.params import Parameters  # noqa: E402
from services.contacts.models import AnalyticsRefresh, Contact, CustomerAnalytics  # noqa: E402
from tests.support import infra  # noqa: E402
from tests.support.auth import identity_headers  # noqa: E402

N = int(os.environ.get("BENCH_GET_N", "5000"))
REPEAT = int(os.environ.get("BENCH_GET_REPEAT", "3"))
PROFILE = os.environ.get("BENCH_GET_PROFILE", "1") != "0"
CONTACT_ID = uuid.UUID("0b6a3c52-9f1e-4f5e-8d7e-3f7c1a2b4c5d")
SNAPSHOT_ID = uuid.UUID("5e1f0c2d-7a4b-4c3e-9d8f-1a2b3c4d5e6f")
MISSING_ID = uuid.UUID("9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d")
AS_OF = datetime(2026, 6, 1, tzinfo=timezone.utc)


def seed(runtime) -> uuid.UUID:
    """One contact with purchases in EUR and USD and a completed EUR snapshot row."""
    contact_id = CONTACT_ID
    with runtime.session_factory() as s, s.begin():
        s.add(Contact(id=contact_id, email="ada@engines.example", email_normalized="ada@engines.example",
                      first_name="Ada", last_name="Lovelace", company="Analytical Engines", job_title="CTO",
                      phone="+44 20 7946 0000", tags=["vip", "engines"]))
    for currency, amount in (("EUR", Decimal("120.50")), ("USD", Decimal("80")), ("EUR", Decimal("19.99"))):
        purchase_facts.record_purchase(runtime.uow(), {"purchase_id": uuid.uuid4(), "contact_id": contact_id,
                                                       "currency": currency, "amount": amount,
                                                       "occurred_at": AS_OF - timedelta(days=30)})
    with runtime.session_factory() as s, s.begin():
        refresh = AnalyticsRefresh(id=SNAPSHOT_ID, status="completed", trigger="schedule", currency="EUR",
                                   as_of=AS_OF, parameters={"window_days": Parameters().window_days},
                                   requested_by="bench", customers=1, finished_at=AS_OF + timedelta(minutes=1),
                                   summary={}, timings={})
        s.add(refresh)
        s.flush()
        s.add(CustomerAnalytics(refresh_id=refresh.id, contact_id=contact_id, purchases_window=2,
                                revenue_window_units=140_4900, purchase_count=2, margin_total_units=40_0000,
                                cost_total_units=5_0000, abc_class="A", abc_rank=1, abc_cumulative_units=140_4900, recency_score=5,
                                frequency_score=4, monetary_score=5, rfm_segment="champions",
                                predicted_margin_units=90_0000, clv_units=300_0000, current_profit_units=35_0000, quadrant="best",
                                pyramid_level="top", stage="loyal", purchases_all_currencies=3))
    return contact_id


def per_request_us(client, path: str, headers: dict) -> float:
    def get() -> None:
        response = client.get(path, headers=headers)
        assert response.status_code == 200, response.status_code

    return best_cpu_us(get, n=N, rounds=REPEAT)


def profile(client, path: str, headers: dict) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(min(N, 2000)):
        client.get(path, headers=headers)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(40)
    out.write("\n")
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(20)
    return out.getvalue()


def main() -> None:
    url = infra.create_database("bench_get")
    try:
        SUITE.migrate("contacts", url)
        settings = SUITE.settings("contacts", {
            "CONTACTS_DATABASE_URL": url, "AMQP_URL": infra.amqp_base_url(),
            "CRM_IDENTITY_PUBLIC_KEY": infra.IDENTITY_PUBLIC_KEY, "CRM_BASE_CURRENCY": "EUR"})
        app = SUITE.create_app("contacts", settings)
        runtime = app.extensions["crm.runtime"]
        contact_id = seed(runtime)
        client = app.test_client()
        headers = identity_headers("contacts:read")
        path = f"/api/v1/contacts/{contact_id}"
        first = client.get(path, headers=headers)
        print(first.status_code, first.get_data(as_text=True))
        statements = statements_sent(runtime.engine, lambda: client.get(path, headers=headers))
        print(f"SQL statements per GET: {len(statements)}")
        for variant, extra in (("json", {}), ("vcard", {"Accept": "text/vcard"}),
                               ("not found", None)):
            if extra is None:
                response = client.get(f"/api/v1/contacts/{MISSING_ID}", headers=headers)
            else:
                response = client.get(path, headers={**headers, **extra})
            print(f"-- {variant}: {response.status_code} {sorted(response.headers.items())}")
            print(response.get_data(as_text=True))
        service = per_request_us(client, path, headers)

        import bench_minimal_app

        minimal = per_request_us(bench_minimal_app.app.test_client(), path, {})
        print(f"contacts GET: {service:,.0f} µs CPU/request; minimal Flask view: {minimal:,.0f} µs; "
              f"minimal ÷ contacts {minimal / service:.2f} (N={N}, best of {REPEAT})")
        if PROFILE:
            print(profile(client, path, headers))
        runtime.engine.dispose()
    finally:
        infra.drop_database(url)


if __name__ == "__main__":
    main()
