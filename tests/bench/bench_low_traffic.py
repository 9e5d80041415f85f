"""CPU per operation at low traffic, in process, on PostgreSQL: what one event or one write costs when it comes alone.

Run with `.venv/bin/python tests/bench/bench_low_traffic.py 2>/dev/null` (the apps' JSON log lines go to stderr).
At a low rate every consumer batch holds one event and every relay claim one row, so the fixed costs of a
transaction and of each statement decide the CPU an event costs; the mixed workload (b) of bench_suite.py sends
its creates that way (10 % of its requests set off three consumers and two relays each). Measured, each on a
database of its own migrated to head, BENCH_LOW_N times (default 400), best of BENCH_LOW_REPEAT rounds (default
3), CPU time of this process per operation:

- the outbox relay's claim of an empty outbox, and the claim + mark of one row (services/common/outbox.py);
- `POST /api/v1/contacts` and `GET /api/v1/contacts?limit=20` through the contacts app's test client;
- one `crm.contact.created` event dispatched alone (a batch of one) by the loyalty consumer (an enrolment) and by
  the leads consumer (a contact no lead became: only the inbox row).

It also prints the statements each one sends. To compare two commits, run it from each checkout with `PYTHONPATH`
set to that checkout (the editable install is otherwise imported from wherever it was installed).
"""
from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "bench"))

from bench_support import best_cpu_us, statements_sent  # noqa: E402

from crm.registry import SUITE  # noqa: E402
from services.common.catalog import make_event, parse_event  # noqa: E402
from services.common.consumer import InboxDispatcher  # noqa: E402
from services.common.outbox import OutboxStore  # noqa: E402
from tests.support import infra  # noqa: E402
from tests.support.auth import identity_headers  # noqa: E402

N = int(os.environ.get("BENCH_LOW_N", "400"))
REPEAT = int(os.environ.get("BENCH_LOW_REPEAT", "3"))


def app_of(service: str, url: str):
    """The service's app as `crm run` builds it, on a migrated database of its own."""
    SUITE.migrate(service, url)
    settings = SUITE.settings(service, {f"{service.upper()}_DATABASE_URL": url, "AMQP_URL": infra.amqp_base_url(),
                                        "CRM_IDENTITY_PUBLIC_KEY": infra.IDENTITY_PUBLIC_KEY})
    return SUITE.create_app(service, settings)


def cpu_us(operation: Callable[[], None]) -> float:
    """CPU microseconds of one call, the best of REPEAT rounds of N calls (after one warm-up call)."""
    operation()
    return best_cpu_us(operation, n=N, rounds=REPEAT)


def report(name: str, engine, operation: Callable[[], None]) -> None:
    sent = [" ".join(statement.split()[:3]) for statement in statements_sent(engine, operation)]
    print(f"| {name:<58} | {cpu_us(operation):>8,.0f} µs | {len(sent):>3} | {'; '.join(sent)}", flush=True)


def contacts_rows(app) -> None:
    runtime = app.extensions["crm.runtime"]
    client = app.test_client()
    headers = identity_headers("contacts:read", "contacts:write")
    run, counter = uuid.uuid4().hex[:8], iter(range(10**9))

    def create() -> None:
        response = client.post("/api/v1/contacts", headers=headers, json={
            "email": f"c-{run}-{next(counter)}@bench.example", "first_name": "Ada", "last_name": "Lovelace",
            "company": "Bench Ltd"})
        assert response.status_code == 201, response.get_data(as_text=True)

    def page() -> None:
        response = client.get("/api/v1/contacts?limit=20", headers=headers)
        assert response.status_code == 200, response.status_code

    report("POST /api/v1/contacts", runtime.engine, create)
    report("GET /api/v1/contacts?limit=20 (a full page)", runtime.engine, page)

    store = OutboxStore(runtime.session_factory, runtime.outbox_model, lease_seconds=30)
    store.mark_published([message.seq for message in store.claim(100_000)])

    def claim_empty() -> None:
        store.claim(200)

    def claim_and_mark_one() -> None:
        with runtime.uow() as uow:
            uow.add_event("crm.contact.updated", {"contact_id": uuid.uuid4(), "changed": ["phone"], "version": 2})
            uow.commit()
        store.mark_published([message.seq for message in store.claim(200)])

    report("outbox relay: claim, nothing to claim", runtime.engine, claim_empty)
    report("outbox: record one event, claim it, mark it published", runtime.engine, claim_and_mark_one)


def consumer_rows(service: str, app, what: str) -> None:
    runtime = app.extensions["crm.runtime"]
    dispatcher = InboxDispatcher(lambda **kw: runtime.uow(**kw), runtime.inbox_model,
                                 dict(SUITE.handlers(service)))

    def one() -> None:
        created = make_event("crm.contact.created", {"contact_id": uuid.uuid4(), "lead_id": None, "matched": False,
                                                     "email": f"{uuid.uuid4().hex[:12]}@bench.example"},
                             source="/services/contacts")
        assert dispatcher.dispatch_batch([parse_event(created.to_json())]) == [True]

    report(f"{service} consumer: one crm.contact.created ({what})", runtime.engine, one)


def main() -> None:
    print(f"| operation (in process, PostgreSQL) {'':<22} | CPU / call  | SQL | statements (N={N}, best of {REPEAT})")
    print(f"|{'-' * 60}|-------------|-----|-----------")
    for service, run in (("contacts", contacts_rows),
                         ("loyalty", lambda app: consumer_rows("loyalty", app, "an enrolment")),
                         ("leads", lambda app: consumer_rows("leads", app, "no lead: the inbox row only"))):
        url = infra.create_database(f"bench_low_{service}")
        try:
            app = app_of(service, url)
            run(app)
            app.extensions["crm.runtime"].engine.dispose()
        finally:
            infra.drop_database(url)


if __name__ == "__main__":
    main()
