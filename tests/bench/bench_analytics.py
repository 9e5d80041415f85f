"""Customer analytics at scale: the full refresh beside one hand-written SQL query per measure, in one run.

Run with `.venv/bin/python tests/bench/bench_analytics.py` (`--customers`, `--purchases`; default 1,000,000 and
10,000,000). It creates a PostgreSQL database of its own, migrated to head, and fills it in SQL
(`INSERT ... SELECT ... FROM generate_series`), never row by row from Python:

- contacts, of whom 10 % never buy (prospects);
- purchases spread over three years before `as_of`, on the buying 90 % with a skewed frequency (the cube of a
  uniform draw picks the buyer), a log-normal amount times a log-normal spending level per customer (so a
  fifth of the customers make most of the revenue, as ABC expects), a margin of 15-50 % (5 % without one),
  3 % in USD, 0.1 % naming a contact that does not exist (the measures must ignore them); 30 % of the
  customers stop buying at some point (so some are lapsed);
- returns of about 2 % of the purchases (half of them partial), up to 30 days after the purchase;
- interactions (`--interactions`, default a fifth of the purchases), of every kind, 5 % of them complaints.

Then VACUUM ANALYZE, one full refresh through `RefreshRunner` (request + run, as the worker and
`crm analytics refresh` run it; each step's seconds come from the refresh row's `timings`), then, in the same
process and on the same warm cache, one hand-written query per measure: `CREATE TEMP TABLE ... AS SELECT`
over the raw tables, written from the formulas in docs/analytics.md and not from our SQL, what an analyst
would write. Our measure passes read the per-customer base table the `base` step computed once; a
hand-written query reads the raw purchases itself. So the table gives both ratios: the pass alone, and the
pass plus the whole base step (what our code needs to answer that one measure from raw data). The base step is
also compared with a hand-written per-customer aggregation of its own.

Every hand-written result is compared with the snapshot (customers per class; CLV per customer within one unit
of 1/10,000) and the agreement is printed. Finally the Pareto curve of the ABC summary is drawn to
docs/img/analytics-pareto.png (`pip install 'matplotlib>=3.8,<4'`; `.[bench]`).

`--keep` leaves the database in place and prints its URL; `--database URL` measures an existing one (skips the
generation; its snapshots, stages and outbox are emptied first): handy to repeat the measurements without another
few minutes of generation. `--serial-hand` runs the hand-written queries without parallel workers.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from bench_support import connect, contacts_database, log  # noqa: E402

from services.common.settings import from_env  # noqa: E402
from services.contacts.analytics.params import Parameters  # noqa: E402
from services.contacts.app import build  # noqa: E402
from tests.support import infra  # noqa: E402

AS_OF = datetime(2026, 11, 1, tzinfo=timezone.utc)
CURRENCY = "EUR"
UNITS = 10_000
PLOT = ROOT / "docs" / "img" / "analytics-pareto.png"
MEASURE_ORDER = ("abc", "rfm", "clv", "profitability", "pyramid", "lifecycle")


# -- generation -----------------------------------------------------------------------------------------------

# `people` numbers the contacts 1..n and gives each its buying habits: a spending level (log-normal), how long
# ago it started buying, and when it stopped (0 = still buying; 30 % stopped somewhere in their span).
PEOPLE = """
CREATE UNLOGGED TABLE bench_people AS
SELECT k, gen_random_uuid() AS id,
       exp(1.0 * sqrt(-2 * ln(1 - u1)) * cos(2 * pi() * u2)) AS level,
       30 + 1065 * u3 AS since_days,
       CASE WHEN u4 < 0.3 THEN u5 * (30 + 1065 * u3) ELSE 0 END AS until_days
FROM (SELECT k, random() u1, random() u2, random() u3, random() u4, random() u5
      FROM generate_series(1, %(customers)s) AS k) draw;
ALTER TABLE bench_people ADD PRIMARY KEY (k)
"""

CONTACTS = """
INSERT INTO contacts (id, email, email_normalized, first_name, last_name, tags, attributes, consents,
                      created_at, updated_at, version)
SELECT id, 'customer' || k || '@example' || (k %% 50) || '.com', 'customer' || k || '@example' || (k %% 50) || '.com',
       'First' || k, 'Last' || k, '[]', '{}', '{}', %(as_of)s - make_interval(days => since_days::int + 1),
       %(as_of)s, 1
FROM bench_people ORDER BY 'customer' || k || '@example' || (k %% 50) || '.com'
"""

# The buyer is the first 90 % of the people, picked by a power of a uniform draw: low numbers buy more often.
PURCHASES = """
INSERT INTO contact_purchases (purchase_id, contact_id, amount, currency, occurred_at, event_id, recorded_at,
                               margin, discount)
SELECT gen_random_uuid(),
       CASE WHEN d.u6 < 0.001 THEN gen_random_uuid() ELSE p.id END,
       a.amount,
       CASE WHEN d.u3 < 0.03 THEN 'USD' ELSE 'EUR' END,
       t.at, NULL, t.at,
       CASE WHEN d.u4 < 0.05 THEN NULL ELSE round(a.amount * (0.15 + 0.35 * d.u5)::numeric, 4) END,
       CASE WHEN d.u5 < 0.2 THEN round(a.amount * 0.05, 4) END
FROM (SELECT 1 + floor(%(buyers)s * power(random(), 3))::int AS k,
             random() u1, random() u2, random() u3, random() u4, random() u5, random() u6, random() u7
      FROM generate_series(1, %(purchases)s)) d
JOIN bench_people p ON p.k = d.k
CROSS JOIN LATERAL (SELECT greatest(1, round((p.level * exp(3.6 + 0.7 * sqrt(-2 * ln(1 - d.u1))
                                                          * cos(2 * pi() * d.u2)))::numeric, 2)) AS amount) a
CROSS JOIN LATERAL (SELECT %(as_of)s - make_interval(secs => 86400 * (p.until_days
                                                     + d.u7 * (p.since_days - p.until_days))) AS at) t
"""

RETURNS = """
INSERT INTO contact_returns (return_id, purchase_id, contact_id, amount, margin, currency, occurred_at, event_id,
                             recorded_at)
SELECT gen_random_uuid(), purchase_id, contact_id, round(amount * part, 4), round(margin * part, 4), currency,
       occurred_at + make_interval(secs => 86400 * 30 * later), NULL, occurred_at
FROM (SELECT *, CASE WHEN random() < 0.5 THEN 1 ELSE 0.5 END AS part, random() AS later
      FROM contact_purchases WHERE random() < 0.02) picked
"""

INTERACTIONS = """
INSERT INTO interactions (id, contact_id, type, channel, direction, occurred_at, summary, recorded_by, category,
                          status, resolved_at, resolved_by, created_at, updated_at, version)
SELECT gen_random_uuid(), p.id, x.type, NULL, NULL, x.at, 'generated', 'bench',
       CASE WHEN x.type = 'complaint' THEN 'product' END,
       CASE WHEN x.type = 'complaint' THEN CASE WHEN d.u3 < 0.7 THEN 'resolved' ELSE 'open' END END,
       CASE WHEN x.type = 'complaint' AND d.u3 < 0.7 THEN x.at + interval '2 days' END,
       CASE WHEN x.type = 'complaint' AND d.u3 < 0.7 THEN 'bench' END,
       x.at, x.at, 1
FROM (SELECT 1 + floor(%(customers)s * random())::int AS k, random() u1, random() u2, random() u3
      FROM generate_series(1, %(interactions)s)) d
JOIN bench_people p ON p.k = d.k
CROSS JOIN LATERAL (SELECT CASE WHEN d.u1 < 0.40 THEN 'email' WHEN d.u1 < 0.65 THEN 'call'
                                WHEN d.u1 < 0.80 THEN 'note' WHEN d.u1 < 0.90 THEN 'inquiry'
                                WHEN d.u1 < 0.95 THEN 'meeting' ELSE 'complaint' END AS type,
                           %(as_of)s - make_interval(secs => 86400 * 1095 * d.u2) AS at) x
"""


def generate(url: str, customers: int, purchases: int, interactions: int) -> dict[str, float]:
    """Fill the database in SQL; seconds per table."""
    args = {"customers": customers, "purchases": purchases, "interactions": interactions,
            "buyers": int(customers * 0.9), "as_of": AS_OF}
    seconds = {}
    with connect(url) as conn:
        conn.execute("SELECT setseed(0.42)")
        for name, sql in (("people", PEOPLE), ("contacts", CONTACTS), ("purchases", PURCHASES),
                          ("returns", RETURNS), ("interactions", INTERACTIONS)):
            started = time.perf_counter()
            for statement in sql.split(";"):
                if statement.strip():
                    conn.execute(statement, args)
            seconds[name] = time.perf_counter() - started
            log(f"generated {name} in {seconds[name]:.1f} s")
        conn.execute("DROP TABLE bench_people")
        started = time.perf_counter()
        for table in ("contacts", "contact_purchases", "contact_returns", "interactions"):
            conn.execute(f"VACUUM ANALYZE {table}")
        seconds["vacuum analyze"] = time.perf_counter() - started
        log(f"VACUUM ANALYZE in {seconds['vacuum analyze']:.1f} s")
    return seconds


def table_counts(url: str) -> dict[str, int]:
    with connect(url) as conn:
        return {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in ("contacts", "contact_purchases", "contact_returns", "interactions")}


# -- the hand-written queries ---------------------------------------------------------------------------------
#
# Written from the formulas (docs/analytics.md), over the raw tables, as an analyst would: each computes its
# measure from scratch. Money stays NUMERIC here; the snapshot's units are compared at the end.

def hand_queries(p: Parameters, currency: str) -> dict[str, str]:
    """name -> CREATE TEMP TABLE hand_<name> AS SELECT ... for the measure, parameters inlined."""
    cost = " ".join(f"WHEN '{kind}' THEN {value}" for kind, value in p.interaction_costs.items())
    cost_case = f"CASE type {cost} ELSE 0 END"
    common = {"cur": currency, "win": p.window_days, "a": p.abc_a_share, "b": p.abc_b_share, "cost": cost_case,
              "lapsed": p.lapsed_after_days, "d": p.discount_rate, "r0": p.default_retention,
              "rmax": p.max_retention, "tenure": p.min_tenure_days, "loyal": p.loyal_min_purchases,
              "repeater": p.repeater_min_purchases, "top": p.pyramid_top_share,
              "big": p.pyramid_top_share + p.pyramid_big_share,
              "medium": p.pyramid_top_share + p.pyramid_big_share + p.pyramid_medium_share}
    window = "occurred_at >= %(t)s - interval '{win} days' AND occurred_at < %(t)s"
    # Each query's own view of a customer's revenue in the window: purchases minus returns, in C, live contacts.
    window_revenue = f"""
        SELECT c.id AS contact_id, sum(x.amount) AS revenue
        FROM contacts c
        JOIN (SELECT contact_id, amount FROM contact_purchases WHERE currency = '{{cur}}' AND {window}
              UNION ALL
              SELECT contact_id, -amount FROM contact_returns WHERE currency = '{{cur}}' AND {window}) x
          ON x.contact_id = c.id
        GROUP BY c.id"""
    # Lifetime margin, first purchase, cost to serve, the newest purchase in any currency: what CLV needs.
    lifetime = """
        life AS (
          SELECT contact_id, count(*) AS n, min(occurred_at) AS first_at, sum(coalesce(margin, 0)) AS margin
          FROM contact_purchases WHERE currency = '{cur}' AND occurred_at < %(t)s GROUP BY contact_id),
        life_ret AS (
          SELECT contact_id, sum(coalesce(margin, 0)) AS margin
          FROM contact_returns WHERE currency = '{cur}' AND occurred_at < %(t)s GROUP BY contact_id),
        any_last AS (
          SELECT contact_id, max(occurred_at) AS last_at FROM contact_purchases WHERE occurred_at < %(t)s
          GROUP BY contact_id),
        served AS (
          SELECT contact_id, sum({cost}) AS cost FROM interactions WHERE occurred_at < %(t)s GROUP BY contact_id),
        earlier AS (
          SELECT p.contact_id, bool_or(p.occurred_at >= %(t)s - interval '365 days') AS stayed
          FROM contact_purchases p JOIN contacts c ON c.id = p.contact_id
          WHERE p.currency = '{cur}' AND p.occurred_at >= %(t)s - interval '730 days' AND p.occurred_at < %(t)s
          GROUP BY p.contact_id
          HAVING bool_or(p.occurred_at < %(t)s - interval '365 days')),
        retention AS (
          SELECT least(CASE WHEN count(*) = 0 THEN {r0}
                            ELSE count(*) FILTER (WHERE stayed)::numeric / count(*) END, {rmax}) AS r
          FROM earlier),
        clv AS (
          SELECT c.id AS contact_id, life.margin - coalesce(life_ret.margin, 0) AS historical,
                 coalesce(served.cost, 0) AS cost,
                 CASE WHEN any_last.last_at < %(t)s - interval '{lapsed} days' THEN 0
                      ELSE (life.margin - coalesce(life_ret.margin, 0))
                           / (greatest(extract(epoch FROM %(t)s - life.first_at) / 86400, {tenure}) / 365)
                           * retention.r / (1 + {d} - retention.r) END AS predicted
          FROM contacts c JOIN life ON life.contact_id = c.id
          LEFT JOIN life_ret ON life_ret.contact_id = c.id
          LEFT JOIN served ON served.contact_id = c.id
          LEFT JOIN any_last ON any_last.contact_id = c.id
          CROSS JOIN retention)"""
    sql = {
        "base": """
            CREATE TEMP TABLE hand_base AS
            WITH bought AS (
              SELECT contact_id,
                     count(*) FILTER (WHERE currency = '{cur}' AND occurred_at >= %(t)s - interval '{win} days')
                       AS n_window,
                     coalesce(sum(amount) FILTER (WHERE currency = '{cur}'
                                                  AND occurred_at >= %(t)s - interval '{win} days'), 0) AS revenue,
                     coalesce(sum(coalesce(margin, 0)) FILTER (WHERE currency = '{cur}'
                                                  AND occurred_at >= %(t)s - interval '{win} days'), 0) AS margin,
                     count(*) FILTER (WHERE currency = '{cur}') AS n,
                     coalesce(sum(amount) FILTER (WHERE currency = '{cur}'), 0) AS revenue_total,
                     coalesce(sum(coalesce(margin, 0)) FILTER (WHERE currency = '{cur}'), 0) AS margin_total,
                     min(occurred_at) FILTER (WHERE currency = '{cur}') AS first_at,
                     max(occurred_at) FILTER (WHERE currency = '{cur}') AS last_at,
                     count(*) AS n_any, max(occurred_at) AS last_any
              FROM contact_purchases WHERE occurred_at < %(t)s GROUP BY contact_id),
            returned AS (
              SELECT contact_id,
                     coalesce(sum(amount) FILTER (WHERE occurred_at >= %(t)s - interval '{win} days'), 0) AS revenue,
                     coalesce(sum(coalesce(margin, 0)) FILTER (WHERE occurred_at >= %(t)s - interval '{win} days'),
                              0) AS margin,
                     sum(amount) AS revenue_total, sum(coalesce(margin, 0)) AS margin_total
              FROM contact_returns WHERE currency = '{cur}' AND occurred_at < %(t)s GROUP BY contact_id),
            served AS (
              SELECT contact_id,
                     coalesce(sum({cost}) FILTER (WHERE occurred_at >= %(t)s - interval '{win} days'), 0) AS cost,
                     sum({cost}) AS cost_total
              FROM interactions WHERE occurred_at < %(t)s GROUP BY contact_id)
            SELECT c.id AS contact_id, coalesce(b.n_window, 0) AS purchases_window,
                   coalesce(b.revenue, 0) - coalesce(r.revenue, 0) AS revenue_window,
                   coalesce(b.margin, 0) - coalesce(r.margin, 0) AS margin_window,
                   coalesce(s.cost, 0) AS cost_window, coalesce(b.n, 0) AS purchase_count,
                   coalesce(b.revenue_total, 0) - coalesce(r.revenue_total, 0) AS revenue_total,
                   coalesce(b.margin_total, 0) - coalesce(r.margin_total, 0) AS margin_total,
                   coalesce(s.cost_total, 0) AS cost_total, b.first_at AS first_purchase_at,
                   b.last_at AS last_purchase_at, coalesce(b.n_any, 0) AS purchases_all_currencies,
                   b.last_any AS last_purchase_any_at
            FROM contacts c LEFT JOIN bought b ON b.contact_id = c.id LEFT JOIN returned r ON r.contact_id = c.id
            LEFT JOIN served s ON s.contact_id = c.id""",
        "abc": f"""
            CREATE TEMP TABLE hand_abc AS
            WITH revenue AS ({window_revenue} HAVING sum(x.amount) > 0),
            ranked AS (
              SELECT contact_id, revenue,
                     sum(revenue) OVER (ORDER BY revenue DESC, contact_id ROWS UNBOUNDED PRECEDING) - revenue AS before,
                     sum(revenue) OVER () AS total
              FROM revenue)
            SELECT contact_id, CASE WHEN before < {{a}} * total THEN 'A' WHEN before < {{b}} * total THEN 'B'
                                    ELSE 'C' END AS class
            FROM ranked""",
        "rfm": f"""
            CREATE TEMP TABLE hand_rfm AS
            WITH bought AS (
              SELECT c.id AS contact_id, count(*) AS n, max(p.occurred_at) AS last_at
              FROM contacts c JOIN contact_purchases p ON p.contact_id = c.id
              WHERE p.currency = '{{cur}}' AND p.{window}
              GROUP BY c.id),
            revenue AS ({window_revenue}),
            scored AS (
              SELECT b.contact_id,
                     ntile(5) OVER (ORDER BY b.last_at, b.contact_id) AS r,
                     ntile(5) OVER (ORDER BY b.n, b.contact_id) AS f,
                     ntile(5) OVER (ORDER BY v.revenue, b.contact_id) AS m
              FROM bought b JOIN revenue v ON v.contact_id = b.contact_id)
            SELECT contact_id, r, f, m,
                   CASE WHEN r >= 4 AND f >= 4 AND m >= 4 THEN 'champions' WHEN r >= 3 AND f >= 4 THEN 'loyal'
                        WHEN r >= 4 AND f = 1 THEN 'new' WHEN r >= 4 THEN 'potential'
                        WHEN r <= 2 AND f >= 3 THEN 'at_risk' WHEN r <= 2 THEN 'hibernating'
                        ELSE 'needs_attention' END AS class
            FROM scored""",
        "clv": f"""
            CREATE TEMP TABLE hand_clv AS
            WITH {lifetime}
            SELECT contact_id, historical + predicted - cost AS clv, predicted FROM clv""",
        "profitability": f"""
            CREATE TEMP TABLE hand_profitability AS
            WITH {lifetime},
            bought_w AS (
              SELECT contact_id, sum(coalesce(margin, 0)) AS margin FROM contact_purchases
              WHERE currency = '{{cur}}' AND {window} GROUP BY contact_id),
            returned_w AS (
              SELECT contact_id, sum(coalesce(margin, 0)) AS margin FROM contact_returns
              WHERE currency = '{{cur}}' AND {window} GROUP BY contact_id),
            served_w AS (
              SELECT contact_id, sum({{cost}}) AS cost FROM interactions WHERE {window} GROUP BY contact_id),
            windowed AS (
              SELECT clv.contact_id,
                     coalesce(b.margin, 0) - coalesce(r.margin, 0) - coalesce(s.cost, 0) AS current_profit
              FROM clv LEFT JOIN bought_w b ON b.contact_id = clv.contact_id
              LEFT JOIN returned_w r ON r.contact_id = clv.contact_id
              LEFT JOIN served_w s ON s.contact_id = clv.contact_id),
            axes AS (
              SELECT w.contact_id, w.current_profit, round(clv.predicted * {UNITS}) AS future_units
              FROM windowed w JOIN clv ON clv.contact_id = w.contact_id),
            medians AS (
              SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY current_profit) AS current,
                     percentile_disc(0.5) WITHIN GROUP (ORDER BY future_units) AS future
              FROM axes)
            SELECT contact_id,
                   CASE WHEN current_profit > medians.current THEN
                          CASE WHEN future_units > medians.future THEN 'best' ELSE 'hold' END
                        ELSE CASE WHEN future_units > medians.future THEN 'invest' ELSE 'worst' END END AS class
            FROM axes CROSS JOIN medians""",
        "pyramid": f"""
            CREATE TEMP TABLE hand_pyramid AS
            WITH bought AS (
              SELECT contact_id, count(*) FILTER (WHERE {window}) AS n_window
              FROM contact_purchases WHERE currency = '{{cur}}' AND occurred_at < %(t)s GROUP BY contact_id),
            revenue AS ({window_revenue}),
            active AS (
              SELECT b.contact_id, row_number() OVER (ORDER BY coalesce(v.revenue, 0) DESC, b.contact_id) AS rank,
                     count(*) OVER () AS n
              FROM bought b JOIN contacts c ON c.id = b.contact_id LEFT JOIN revenue v ON v.contact_id = b.contact_id
              WHERE b.n_window >= 1)
            SELECT c.id AS contact_id,
                   CASE WHEN b.contact_id IS NULL THEN 'prospect' WHEN a.contact_id IS NULL THEN 'inactive'
                        WHEN a.rank <= ceil({{top}} * a.n) THEN 'top' WHEN a.rank <= ceil({{big}} * a.n) THEN 'big'
                        WHEN a.rank <= ceil({{medium}} * a.n) THEN 'medium' ELSE 'small' END AS class
            FROM contacts c LEFT JOIN bought b ON b.contact_id = c.id LEFT JOIN active a ON a.contact_id = c.id""",
        "lifecycle": """
            CREATE TEMP TABLE hand_lifecycle AS
            WITH bought AS (
              SELECT contact_id, count(*) AS n, max(occurred_at) AS last_at
              FROM contact_purchases WHERE occurred_at < %(t)s GROUP BY contact_id)
            SELECT c.id AS contact_id,
                   CASE WHEN b.n IS NULL THEN 'prospect'
                        WHEN b.last_at < %(t)s - interval '{lapsed} days' THEN 'lapsed'
                        WHEN b.n = 1 THEN 'new' WHEN b.n >= {loyal} THEN 'loyal'
                        WHEN b.n >= {repeater} THEN 'repeater' ELSE 'general' END AS class
            FROM contacts c LEFT JOIN bought b ON b.contact_id = c.id""",
    }
    return {name: text.format(**common) for name, text in sql.items()}


def run_hand_queries(url: str, params: Parameters, currency: str, *,
                     serial: bool) -> tuple[psycopg.Connection, dict[str, float]]:
    """Run every hand-written query once on one connection (its temp tables stay for the checks); seconds each.

    PostgreSQL may run a CREATE TABLE AS query with parallel workers, never an INSERT ... SELECT or an UPDATE
    (our passes); `serial` takes the parallel workers away from the hand-written queries too.
    """
    conn = connect(url)
    if serial:
        conn.execute("SET max_parallel_workers_per_gather = 0")
    seconds = {}
    for name, sql in hand_queries(params, currency).items():
        conn.execute(f"DROP TABLE IF EXISTS hand_{name}")
        started = time.perf_counter()
        conn.execute(sql, {"t": AS_OF})
        seconds[name] = time.perf_counter() - started
        log(f"hand-written {name}: {seconds[name]:.1f} s")
    return conn, seconds


# -- our refresh ----------------------------------------------------------------------------------------------

def run_refresh(url: str, currency: str):
    """One full refresh through the runner, as `crm analytics refresh` runs it; (refresh row, wall seconds)."""
    from services.contacts.analytics.refresh import STEPS, RefreshRunner

    runtime = build(from_env("contacts", {"CONTACTS_DATABASE_URL": url,
                                          "CRM_IDENTITY_PUBLIC_KEY": infra.IDENTITY_PUBLIC_KEY}))
    try:
        runner = RefreshRunner(runtime)
        requested = runner.request(currency=currency, parameters=None, as_of=AS_OF, trigger="cli",
                                   requested_by="bench")
        log(f"refresh {requested.id}: {len(STEPS)} steps")
        started = time.perf_counter()
        done = runner.run_here(requested.id, on_step=lambda held: log(
            f"  step {held.step} done in {held.timings.get(held.step)} s ({held.steps_done}/{held.steps_total})"))
        wall = time.perf_counter() - started
        log(f"refresh {done.status} in {wall:.1f} s")
        return done, wall
    finally:
        runtime.engine.dispose()


# -- agreement ------------------------------------------------------------------------------------------------

SNAPSHOT_COLUMN = {"abc": "abc_class", "rfm": "rfm_segment", "profitability": "quadrant", "pyramid": "pyramid_level",
                   "lifecycle": "stage"}
BASE_COLUMNS = ("purchases_window", "purchase_count", "purchases_all_currencies", "first_purchase_at",
                "last_purchase_at", "last_purchase_any_at")
BASE_MONEY = ("revenue_window", "margin_window", "cost_window", "revenue_total", "margin_total", "cost_total")


def agreement(conn: psycopg.Connection, refresh_id) -> dict[str, str]:
    """measure -> 'equal ...' or what differs, hand-written tables against the snapshot."""
    snap = "(SELECT * FROM customer_analytics WHERE refresh_id = %(r)s)"
    args = {"r": refresh_id}
    verdicts = {}
    differs = " OR ".join([f"h.{c} IS DISTINCT FROM s.{c}" for c in BASE_COLUMNS]
                          + [f"round(h.{c} * {UNITS}) IS DISTINCT FROM s.{c}_units" for c in BASE_MONEY])
    rows, bad = conn.execute(f"SELECT count(*), count(*) FILTER (WHERE s.contact_id IS NULL OR h.contact_id IS NULL "
                             f"OR {differs}) FROM hand_base h FULL JOIN {snap} s ON s.contact_id = h.contact_id",
                             args).fetchone()
    verdicts["base"] = f"DIFFER: {bad:,} of {rows:,} rows" if bad else f"equal ({rows:,} rows, every column)"
    for measure, column in SNAPSHOT_COLUMN.items():
        ours = dict(conn.execute(f"SELECT {column}, count(*) FROM {snap} s WHERE {column} IS NOT NULL GROUP BY 1",
                                 args).fetchall())
        theirs = dict(conn.execute(f"SELECT class, count(*) FROM hand_{measure} GROUP BY 1").fetchall())
        mismatched = conn.execute(
            f"SELECT count(*) FROM hand_{measure} h FULL JOIN (SELECT contact_id, {column} FROM {snap} s "
            f"WHERE {column} IS NOT NULL) s ON s.contact_id = h.contact_id "
            f"WHERE h.class IS DISTINCT FROM s.{column}", args).fetchone()[0]
        counts = ", ".join(f"{name} {theirs.get(name, 0):,}" for name in sorted(set(ours) | set(theirs)))
        if ours == theirs and not mismatched:
            verdicts[measure] = f"equal per class and per customer ({counts})"
        else:
            verdicts[measure] = (f"DIFFER: ours {dict(sorted(ours.items()))}, hand-written "
                                 f"{dict(sorted(theirs.items()))}, {mismatched:,} customers differ")
    rows, off, exact = conn.execute(
        f"SELECT count(*), count(*) FILTER (WHERE s.contact_id IS NULL OR h.contact_id IS NULL "
        f"OR abs(round(h.clv * {UNITS}) - s.clv_units) > 1), "
        f"count(*) FILTER (WHERE round(h.clv * {UNITS}) = s.clv_units) "
        f"FROM hand_clv h FULL JOIN (SELECT contact_id, clv_units FROM {snap} s WHERE clv_units IS NOT NULL) s "
        f"ON s.contact_id = h.contact_id", args).fetchone()
    verdicts["clv"] = (f"equal within 1/10,000 for {rows:,} customers ({exact:,} to the unit)" if not off
                       else f"DIFFER: {off:,} of {rows:,} customers off by more than 1/10,000")
    return verdicts


# -- the Pareto plot ------------------------------------------------------------------------------------------

def pareto_points(url: str, refresh) -> list[tuple[float, float]]:
    """(customer share, cumulative revenue share) at k = 0..100 %: the ABC summary's, else from the snapshot."""
    stored = ((refresh.summary or {}).get("abc") or {}).get("pareto")
    if stored:
        points = []
        for point in stored:
            if isinstance(point, dict):
                x = point.get("customer_share", point.get("customers"))
                y = point.get("revenue_share", point.get("cumulative_revenue_share", point.get("revenue")))
            else:
                x, y = point
            points.append((float(Decimal(str(x))), float(Decimal(str(y)))))
        return points
    log("no Pareto points in the ABC summary; computing them from customer_analytics")
    with connect(url) as conn:
        n, total = conn.execute("SELECT count(*), sum(revenue_window_units) FROM customer_analytics "
                                "WHERE refresh_id = %s AND abc_rank IS NOT NULL", [refresh.id]).fetchone()
        cumulative = dict(conn.execute(
            "SELECT abc_rank, abc_cumulative_units FROM customer_analytics WHERE refresh_id = %s "
            "AND abc_rank = ANY(%s)", [refresh.id, [-(-k * n // 100) for k in range(1, 101)]]).fetchall())
    if not n or not total:
        return [(0.0, 0.0)]
    return [(0.0, 0.0)] + [(k / 100, cumulative[-(-k * n // 100)] / total) for k in range(1, 101)]


def draw_pareto(points: list[tuple[float, float]], title: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if len(points) < 2:
        log("no ABC population: no Pareto plot")
        return
    xs, ys = [100 * x for x, _ in points], [100 * y for _, y in points]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.plot(xs, ys, color="#1f77b4", linewidth=2, label="cumulative revenue")
    ax.plot([0, 100], [0, 100], color="#999999", linestyle=":", linewidth=1, label="every customer equal")
    for share, label in ((80, "A: 80 %"), (95, "A+B: 95 %")):
        ax.axhline(share, color="#d62728", linestyle="--", linewidth=0.8)
        ax.text(1, share + 1, label, ha="left", color="#d62728", fontsize=8)
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 101)
    ax.set_xlabel("customers with revenue in the window, ranked by it (%)")
    ax.set_ylabel("cumulative share of revenue (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, linewidth=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


# -- the table ------------------------------------------------------------------------------------------------

def print_table(refresh, wall: float, hand: dict[str, float], verdicts: dict[str, str]) -> None:
    from services.contacts.analytics.refresh import STEPS

    stored = refresh.timings or {}  # JSONB keeps no order: the runner's
    timings = {name: float(stored[name]) for name in STEPS if name in stored}
    base = timings.get("base", 0.0)
    print(f"\n{'step / measure':<16}{'our pass s':>11}{'hand s':>9}{'pass/hand':>11}{'pass+base s':>13}"
          f"{'(pass+base)/hand':>18}  target <= 1.5")
    for name in timings:
        ours = timings[name]
        if name == "base":
            print(f"{name:<16}{ours:>11.1f}{hand['base']:>9.1f}{ours / hand['base']:>11.2f}{'':>13}{'':>18}")
        elif name in hand:
            print(f"{name:<16}{ours:>11.1f}{hand[name]:>9.1f}{ours / hand[name]:>11.2f}{ours + base:>13.1f}"
                  f"{(ours + base) / hand[name]:>18.2f}")
        else:
            print(f"{name:<16}{ours:>11.1f}{'':>9}")
    hand_measures = sum(hand[name] for name in MEASURE_ORDER)
    print(f"{'refresh total':<16}{wall:>11.1f}{hand_measures:>9.1f}{wall / hand_measures:>11.2f}"
          f"   (hand: the six measures' queries, each from raw data)")
    print(f"  steps summed {sum(timings.values()):.1f} s; refresh wall {wall:.1f} s = {wall / 60:.1f} min")
    print("\nagreement of the hand-written queries with the snapshot:")
    for name, verdict in verdicts.items():
        print(f"  {name:<14}{verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--purchases", type=int, default=10_000_000)
    parser.add_argument("--interactions", type=int, default=None, help="default: a fifth of the purchases")
    parser.add_argument("--database", help="measure this existing (generated) database instead of a new one; its "
                                           "snapshots, stages and outbox are emptied first")
    parser.add_argument("--keep", action="store_true", help="do not drop the database at the end")
    parser.add_argument("--generate-only", action="store_true", help="stop after generating (implies --keep)")
    parser.add_argument("--plot", type=Path, default=PLOT)
    parser.add_argument("--serial-hand", action="store_true",
                        help="no parallel workers for the hand-written queries (our INSERT/UPDATE passes get none)")
    args = parser.parse_args()
    interactions = args.interactions if args.interactions is not None else args.purchases // 5
    load_before = os.getloadavg()
    with contacts_database("bench_analytics", existing=args.database, keep=args.keep or args.generate_only,
                           fill=lambda url: generate(url, args.customers, args.purchases, interactions)) as url:
        counts = table_counts(url)
        log(f"rows: {counts}")
        if args.generate_only:
            print(url)
            return
        with connect(url) as conn:  # earlier runs' snapshots would be superseded alongside; start clean
            conn.execute("TRUNCATE customer_analytics, analytics_refreshes, contact_stages, outbox")
        refresh, wall = run_refresh(url, CURRENCY)
        params = Parameters.from_json(refresh.parameters)
        conn, hand = run_hand_queries(url, params, CURRENCY, serial=args.serial_hand)
        with conn:
            verdicts = agreement(conn, refresh.id)
        print(f"Customer analytics, PostgreSQL, {counts['contacts']:,} contacts, {counts['contact_purchases']:,} "
              f"purchases, {counts['contact_returns']:,} returns, {counts['interactions']:,} interactions; "
              f"currency {CURRENCY}, as_of {AS_OF:%Y-%m-%d}, window {params.window_days} days; hand-written "
              f"queries {'serial' if args.serial_hand else 'with the server default parallel workers'}")
        print_table(refresh, wall, hand, verdicts)
        points = pareto_points(url, refresh)
        draw_pareto(points, f"Pareto curve (ABC), {counts['contacts']:,} customers, "
                            f"{counts['contact_purchases']:,} purchases", args.plot)
        at20 = next((y for x, y in points if abs(x - 0.2) < 1e-9), None)
        print(f"\nPareto plot: {args.plot}" + (f" (top 20 % of buyers: {100 * at20:.1f} % of revenue)" if at20 else ""))
        print(f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} (2 cores)")


if __name__ == "__main__":
    main()
