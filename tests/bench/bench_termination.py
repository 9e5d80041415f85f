"""A termination simulation at scale: the five customer policies over 100,000 customers, in the worker's job.

Run with `.venv/bin/python tests/bench/bench_termination.py` (`--customers`, default 100,000; `--batch`,
default CRM_TERMINATION_BATCH's 500). It creates a PostgreSQL database of its own, migrated to head, and fills
it in SQL (`INSERT ... SELECT ... FROM generate_series`), never row by row from Python:

- contacts, 10 purchases per customer on average over the last two years (a few customers buy mostly on
  discount, one purchase in ten has a coupon code), returns of 2 % of the purchases;
- complaints: most customers none, one in twenty several (so serial complainers exist);
- invoice payments: one to six per customer, a few customers mostly late, 3 % never paid;
- fraud flags on 0.5 % of the customers (a fifth of them cleared);
- an analytics snapshot, computed by the analytics refresh itself (the `unprofitable` policy reads it).

Then VACUUM ANALYZE, the five built-in customer policies (serial_complainer, late_payer, fraud, deal_seeker,
unprofitable) created through the kit, a simulation requested as the API does, and one `TerminationJob.run_once`
(claim, batches, counts), as the worker runs it. Printed: subjects judged per second, the total time, the peak
RSS of the process (`resource.getrusage`, before and after the run: memory stays flat because one batch is held
at a time), the batch timings (reading histories, evaluating in the plugins, writing rows) and the counts.
`--keep` leaves the database in place; `--database URL` runs on one generated before (its runs are emptied).
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench_support import connect, contacts_database, log  # noqa: E402
from sqlalchemy import text  # noqa: E402

from services.common.settings import from_env  # noqa: E402
from services.common.termination import policies, runs  # noqa: E402
from services.common.termination.jobs import TerminationJob  # noqa: E402
from services.contacts import termination  # noqa: E402
from services.contacts.app import build  # noqa: E402

AS_OF = datetime.now(timezone.utc)
CODES = ("serial_complainer", "late_payer", "fraud", "deal_seeker", "unprofitable")


GENERATION = {
    "people": """
CREATE UNLOGGED TABLE bench_people AS
SELECT k, gen_random_uuid() AS id, random() AS habit, random() AS temper, random() AS payer
FROM generate_series(1, %(customers)s) AS k;
ALTER TABLE bench_people ADD PRIMARY KEY (k)
""",
    "contacts": """
INSERT INTO contacts (id, email, email_normalized, first_name, tags, attributes, consents, created_at, updated_at,
                      version)
SELECT id, 'customer' || k || '@example.com', 'customer' || k || '@example.com', 'First' || k, '[]', '{}', '{}',
       %(as_of)s - interval '800 days', %(as_of)s, 1
FROM bench_people ORDER BY k
""",
    "purchases": """
INSERT INTO contact_purchases (purchase_id, contact_id, amount, currency, occurred_at, recorded_at, margin, discount,
                               coupon_code)
SELECT gen_random_uuid(), p.id, a.amount, 'EUR', t.at, t.at, round(a.amount * 0.3, 4),
       CASE WHEN d.u2 < 0.1 + 0.85 * power(p.habit, 8) THEN round(a.amount * 0.15, 4) END,
       CASE WHEN d.u3 < 0.1 THEN 'SAVE10' END
FROM (SELECT 1 + floor(%(customers)s * random())::int AS k, random() u1, random() u2, random() u3, random() u4
      FROM generate_series(1, %(purchases)s)) d
JOIN bench_people p ON p.k = d.k
CROSS JOIN LATERAL (SELECT round((5 + 95 * d.u1)::numeric, 2) AS amount) a
CROSS JOIN LATERAL (SELECT %(as_of)s - make_interval(secs => 86400 * 730 * d.u4) AS at) t
""",
    "returns": """
INSERT INTO contact_returns (return_id, purchase_id, contact_id, amount, margin, currency, occurred_at, recorded_at)
SELECT gen_random_uuid(), purchase_id, contact_id, amount, margin, currency, occurred_at + interval '3 days',
       occurred_at + interval '3 days'
FROM contact_purchases WHERE random() < 0.02
""",
    "complaints": """
INSERT INTO interactions (id, contact_id, type, occurred_at, summary, recorded_by, category, status, resolved_at,
                          resolved_by, created_at, updated_at, version)
SELECT gen_random_uuid(), p.id, 'complaint', c.at, 'generated', 'bench', 'product',
       CASE WHEN c.resolved THEN 'resolved' ELSE 'open' END, CASE WHEN c.resolved THEN c.at + interval '2 days' END,
       CASE WHEN c.resolved THEN 'bench' END, %(as_of)s, %(as_of)s, 1
FROM bench_people p
CROSS JOIN LATERAL generate_series(1, CASE WHEN p.temper < 0.05 THEN 4 + floor(p.temper * 200)::int
                                           WHEN p.temper < 0.3 THEN 1 ELSE 0 END) n
-- n and p in the draw: an uncorrelated LATERAL subquery is evaluated once, giving every row the same values.
CROSS JOIN LATERAL (SELECT %(as_of)s - make_interval(secs => 86400 * 400 * random() + 0 * n) AS at,
                           random() + 0 * n < 0.7 AS resolved) c
""",
    "payments": """
INSERT INTO contact_payments (id, contact_id, invoice_reference, amount, currency, due_on, paid_on, recorded_by,
                              created_at, updated_at, version)
SELECT gen_random_uuid(), p.id, 'INV-' || p.k || '-' || n, 100, 'EUR', due.on_day,
       CASE WHEN random() < 0.03 THEN NULL
            WHEN random() < 0.05 + 0.8 * power(p.payer, 8) THEN due.on_day + (1 + floor(60 * random()))::int
            ELSE due.on_day - 2 END,
       'bench', %(as_of)s, %(as_of)s, 1
FROM bench_people p
CROSS JOIN LATERAL generate_series(1, 1 + floor(5 * p.payer)::int) n
CROSS JOIN LATERAL (SELECT (%(as_of)s - make_interval(days => (30 + 300 * random() + 0 * n)::int))::date AS on_day) due
""",
    "fraud_flags": """
INSERT INTO contact_fraud_flags (id, contact_id, code, reason, flagged_by, flagged_at, cleared_at, cleared_by,
                                 clear_reason)
SELECT gen_random_uuid(), id, 'chargeback', 'generated', 'bench', %(as_of)s - interval '10 days',
       CASE WHEN k %% 1000 = 0 THEN %(as_of)s END, CASE WHEN k %% 1000 = 0 THEN 'bench' END,
       CASE WHEN k %% 1000 = 0 THEN 'resolved' END
FROM bench_people WHERE k %% 200 = 0
""",
}


def analytics_snapshot(url: str) -> None:
    """A completed analytics refresh with one row per customer, through the measures' own code, so the
    `unprofitable` policy reads a real snapshot."""
    from services.contacts.analytics.refresh import RefreshRunner

    runtime = build(_settings(url))
    runner = RefreshRunner(runtime)
    refresh = runner.request(currency="EUR", parameters=None, as_of=AS_OF, trigger="cli", requested_by="bench")
    runner.run_here(refresh.id)
    runtime.engine.dispose()


def generate(url: str, customers: int, purchases: int) -> None:
    args = {"customers": customers, "purchases": purchases, "as_of": AS_OF}
    with connect(url) as conn:
        conn.execute("SELECT setseed(0.42)")
        for name, sql in GENERATION.items():
            started = time.perf_counter()
            for statement in sql.split(";"):
                if statement.strip():
                    conn.execute(statement, args)
            log(f"generated {name} in {time.perf_counter() - started:.1f} s")
        conn.execute("DROP TABLE bench_people")
        for table in ("contacts", "contact_purchases", "contact_returns", "interactions", "contact_payments",
                      "contact_fraud_flags"):
            conn.execute(f"VACUUM ANALYZE {table}")
    started = time.perf_counter()
    analytics_snapshot(url)
    log(f"analytics snapshot in {time.perf_counter() - started:.1f} s")


def counts(url: str) -> dict[str, int]:
    with connect(url) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("contacts", "contact_purchases", "interactions", "contact_payments", "contact_fraud_flags",
                          "customer_analytics")}


def _settings(url: str, **env):
    return from_env("contacts", {"CONTACTS_DATABASE_URL": url, "CRM_LOG_LEVEL": "WARNING", **env},
                    require_secret=False)


def peak_rss_mb() -> float:
    """The process's peak resident set so far (`resource.getrusage`; kilobytes on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) / 1024 for line in status if line.startswith(field + ":"))
    except (OSError, StopIteration):
        return None


def reset_peak() -> bool:
    """Start the kernel's peak-RSS mark afresh (VmHWM, which getrusage's ru_maxrss reads), so it shows the run's
    own peak, not the generation's (Linux: writing 5 to clear_refs); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def simulate(url: str, batch: int | None) -> None:
    env = {"CRM_TERMINATION_BATCH": str(batch)} if batch else {}
    runtime = build(_settings(url, **env))
    kit = termination.build_kit(runtime.settings)
    with runtime.uow() as uow:  # a clean slate on a kept database
        for table in ("termination_run_findings", "termination_run_subjects", "termination_runs",
                      "termination_policies"):
            uow.session.execute(text(f"DELETE FROM {table}"))
        uow.commit()
    for code in CODES:
        policies.create_policy(runtime.uow(), kit, runtime.plugins, {"code": code})
    run = runs.request_simulation(runtime.uow(), kit, runtime.settings, requested_by="bench")
    timings: list[runs.BatchTiming] = []
    rss_before, peak_before = _status_mb("VmRSS"), peak_rss_mb()
    own_peak = reset_peak()
    started = time.perf_counter()
    assert TerminationJob(runtime, kit).run_once(on_batch=timings.append)
    total = time.perf_counter() - started
    with runtime.session_factory() as session:
        done = session.get(kit.models.Run, run.seq)
    assert done.status == "completed", done.error
    per_batch = [t.read + t.evaluate + t.write for t in timings]

    def spread(values):
        ordered = sorted(values)
        return (f"median {statistics.median(ordered):.3f} s, p95 {ordered[int(0.95 * (len(ordered) - 1))]:.3f} s, "
                f"max {ordered[-1]:.3f} s")

    print(f"Termination simulation, PostgreSQL, {done.subjects_seen:,} customers, policies {', '.join(CODES)}, "
          f"window {done.window_days} days, batches of {runtime.settings.termination_batch}")
    print(f"  total {total:.1f} s, {done.subjects_seen / total:,.0f} customers/s, {done.batches} batches, "
          f"{done.subjects_flagged:,} flagged, {done.subjects_degraded} degraded")
    # With the mark reset, getrusage's peak is the run's own; otherwise it may be the generation's.
    print(f"  RSS {rss_before:.0f} MB before the run; peak RSS (getrusage) {peak_rss_mb():.0f} MB "
          f"{'during the run' if own_peak else 'of the whole process'}; the process's peak before the run "
          f"(generating, the analytics refresh) {peak_before:.0f} MB")
    print(f"  per batch: {spread(per_batch)}")
    print(f"  reading histories {sum(t.read for t in timings):.1f} s ({spread([t.read for t in timings])})")
    print(f"  evaluating        {sum(t.evaluate for t in timings):.1f} s ({spread([t.evaluate for t in timings])})")
    print(f"  writing rows      {sum(t.write for t in timings):.1f} s ({spread([t.write for t in timings])})")
    print(f"  counts: {done.counts}")
    runtime.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--purchases", type=int, default=None, help="default: ten per customer")
    parser.add_argument("--batch", type=int, default=None, help="subjects per batch (CRM_TERMINATION_BATCH)")
    parser.add_argument("--database", help="run on this existing generated database")
    parser.add_argument("--keep", action="store_true", help="do not drop the database at the end")
    args = parser.parse_args()
    purchases = args.purchases or 10 * args.customers
    with contacts_database("bench_termination", existing=args.database, keep=args.keep,
                           fill=lambda url: generate(url, args.customers, purchases)) as url:
        log(f"rows: {counts(url)}")
        load = os.getloadavg()[0]
        simulate(url, args.batch)
        print(f"  load average before {load:.2f}, after {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
