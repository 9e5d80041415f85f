"""Every measure on a small hand-checked data set, on SQLite and on PostgreSQL.

The expected values are worked out here from the formulas in docs/analytics.md with plain Python and Decimal
(`reference()`), never with the refresh's SQL; a few of them are also written out as literals (the ABC classes,
the retention, the pyramid, the stages, Dave's CLV), which checks the reference itself. The data set has what
the formulas single out: a return in the window, a purchase exactly at the window's start and one exactly at
`as_of`, purchases in another currency, a contact who bought only the year before last, a full return, margins
left out, interactions of every costly kind (a complaint among them), and facts naming no contact.
"""
from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

import pytest
from sqlalchemy import select

from services.contacts.analytics.params import Parameters
from services.contacts.analytics.refresh import RefreshRunner
from services.contacts.models import (
    Contact,
    ContactPurchase,
    ContactReturn,
    CustomerAnalytics,
    Interaction,
)

pytestmark = pytest.mark.integration

UTC = timezone.utc
AS_OF = datetime(2026, 6, 1, tzinfo=UTC)
# Bands wide enough that every level of the pyramid has someone in a data set of nine active customers.
OVERRIDES = {"pyramid_top_share": "0.1", "pyramid_big_share": "0.2", "pyramid_medium_share": "0.3"}
PEOPLE = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "ken", "leo",
          "mallory", "nick")
NOBODY = None  # a fact naming an id that is no contact: ignored


def at(day: str, time: str = "12:00") -> datetime:
    return datetime.fromisoformat(f"{day}T{time}").replace(tzinfo=UTC)


@dataclass(frozen=True)
class Fact:
    who: str | None
    amount: Decimal | None  # purchases and returns
    margin: Decimal | None
    currency: str
    occurred_at: datetime
    kind: str = ""  # interactions


def buy(who, amount, margin, day, currency="EUR", time="12:00"):
    return Fact(who, Decimal(amount), None if margin is None else Decimal(margin), currency, at(day, time))


PURCHASES = [
    # alice: eight in the window, two the year before last, her first on 2024-09-01
    *(buy("alice", "500", "100", f"2025-{month:02d}-10") for month in range(7, 13)),
    buy("alice", "500", "100", "2026-02-10"), buy("alice", "500", "100", "2026-05-30"),
    buy("alice", "300", "60", "2024-09-01"), buy("alice", "300", "60", "2025-01-15"),
    # bob: three in the window, one the year before
    buy("bob", "400", "80", "2025-08-01"), buy("bob", "300", "60", "2025-11-01"), buy("bob", "300", "60", "2026-04-01"),
    buy("bob", "200", "40", "2025-03-01", time="00:00"),
    # carol: two in the window, one of them returned
    buy("carol", "600", "90", "2025-09-15"), buy("carol", "400", "60", "2026-01-20"),
    buy("dave", "250", "50", "2026-03-03"),
    # erin: only the year before last
    buy("erin", "400", "80", "2024-08-01"), buy("erin", "300", "60", "2024-12-01"),
    # heidi: only dollars
    buy("heidi", "900", "200", "2025-10-01", currency="USD"), buy("heidi", "100", "20", "2026-01-01", currency="USD"),
    # ivan: one at the window's first instant (in), one at as_of (out), no margin given
    buy("ivan", "100", None, "2025-06-01", time="00:00"), buy("ivan", "5000", "1000", "2026-06-01", time="00:00"),
    *(buy("judy", "50", "10", f"2025-{month:02d}-05") for month in range(7, 13)),
    buy("ken", "1500", "500", "2026-05-01"),
    buy("leo", "80", "16", "2024-10-01"), buy("leo", "120", "24", "2026-05-20"),
    buy("mallory", "90", "18", "2025-02-01"),
    buy("nick", "300", "60", "2025-12-12"),
    buy(NOBODY, "10000", "5000", "2026-01-01"),
]
RETURNS = [
    buy("carol", "400", "60", "2026-02-01"),
    buy("nick", "300", "60", "2025-12-20"),
    buy("erin", "100", "20", "2025-01-01"),  # before the window: lowers only the lifetime figures
    buy(NOBODY, "10", "5", "2026-01-01"),
]


def talk(who, kind, day):
    return Fact(who, None, None, "", at(day), kind)


INTERACTIONS = [
    talk("carol", "complaint", "2026-02-02"),
    talk("frank", "call", "2025-10-01"), talk("frank", "call", "2026-01-01"), talk("frank", "email", "2024-01-01"),
    talk("judy", "meeting", "2025-07-05"), talk("judy", "inquiry", "2025-03-05"),
    talk("alice", "note", "2026-01-01"),
    talk("ken", "complaint", "2026-06-01"),  # at as_of: not yet
    talk(NOBODY, "meeting", "2026-01-01"),
]


# -- the databases ---------------------------------------------------------------------------------------------

@pytest.fixture
def db(any_runtime):
    """A contacts runtime on SQLite in memory, or on a fresh migrated PostgreSQL database (conftest)."""
    return any_runtime


def seed(runtime, people=PEOPLE) -> dict[str, uuid.UUID]:
    ids = {name: uuid.uuid4() for name in people}
    with runtime.session_factory() as s, s.begin():
        s.add_all(Contact(id=ids[name], email=f"{name}@example.com", email_normalized=f"{name}@example.com")
                  for name in people)
    add_facts(runtime, ids, PURCHASES, RETURNS, INTERACTIONS)
    return ids


def add_facts(runtime, ids, purchases=(), returns=(), interactions=()) -> None:
    def who(fact):
        return ids[fact.who] if fact.who else uuid.uuid4()

    with runtime.session_factory() as s, s.begin():
        s.add_all(ContactPurchase(purchase_id=uuid.uuid4(), contact_id=who(f), amount=f.amount, margin=f.margin,
                                  currency=f.currency, occurred_at=f.occurred_at) for f in purchases)
        s.add_all(ContactReturn(return_id=uuid.uuid4(), purchase_id=uuid.uuid4(), contact_id=who(f),
                                amount=f.amount, margin=f.margin, currency=f.currency, occurred_at=f.occurred_at)
                  for f in returns)
        s.add_all(Interaction(contact_id=who(f), type=f.kind, occurred_at=f.occurred_at, summary="x",
                              recorded_by="test", **({"category": "billing", "status": "open"}
                                                     if f.kind == "complaint" else {}))
                  for f in interactions)


def refresh(runtime, overrides=OVERRIDES):
    runner = RefreshRunner(runtime)
    requested = runner.request(currency="EUR", parameters=overrides, as_of=AS_OF, trigger="cli", requested_by="test")
    done = runner.run_here(requested.id)
    assert (done.status, done.error) == ("completed", None)
    with runtime.session_factory() as s:
        rows = s.scalars(select(CustomerAnalytics).where(CustomerAnalytics.refresh_id == done.id)).all()
    return done, {row.contact_id: row for row in rows}


# -- the reference: the formulas of docs/analytics.md in plain Python ----------------------------------------------

UNITS = Decimal(10_000)
MEASURED = ("purchases_window", "revenue_window_units", "margin_window_units", "cost_window_units", "purchase_count",
            "revenue_total_units", "margin_total_units", "cost_total_units", "first_purchase_at", "last_purchase_at",
            "purchases_all_currencies", "last_purchase_any_at", "abc_class", "abc_rank", "abc_cumulative_units",
            "recency_score", "frequency_score", "monetary_score", "rfm_segment", "predicted_margin_units",
            "clv_units", "current_profit_units", "quadrant", "pyramid_level", "stage")


def units(amount) -> int:
    return int(Decimal(amount) * UNITS)


def ntile(position: int, n: int, buckets: int = 5) -> int:
    """SQL's ntile for the 0-based `position` of `n` rows: the first n % buckets buckets get one row more."""
    small, extra = divmod(n, buckets)
    big_rows = extra * (small + 1)
    if position < big_rows:
        return position // (small + 1) + 1
    return extra + (position - big_rows) // small + 1


def reference(ids, facts, as_of, params: Parameters, currency="EUR") -> dict[uuid.UUID, dict]:
    purchases, returns, interactions = facts
    start = as_of - timedelta(days=params.window_days)
    year_ago, two_years_ago = as_of - timedelta(days=365), as_of - timedelta(days=730)
    lapsed = as_of - timedelta(days=params.lapsed_after_days)
    out = {}
    for name, contact_id in ids.items():
        mine = [f for f in purchases if f.who == name and f.occurred_at < as_of]
        bought = [f for f in mine if f.currency == currency]
        window = [f for f in bought if f.occurred_at >= start]
        back = [f for f in returns if f.who == name and f.currency == currency and f.occurred_at < as_of]
        back_window = [f for f in back if f.occurred_at >= start]
        talks = [f for f in interactions if f.who == name and f.occurred_at < as_of]

        def money(rows, attr):
            return sum(units(getattr(f, attr) or 0) for f in rows)

        def cost(rows):
            return sum(units(params.interaction_costs[f.kind]) for f in rows)

        out[contact_id] = {
            "name": name,
            "purchases_window": len(window),
            "revenue_window_units": money(window, "amount") - money(back_window, "amount"),
            "margin_window_units": money(window, "margin") - money(back_window, "margin"),
            "cost_window_units": cost([f for f in talks if f.occurred_at >= start]),
            "purchase_count": len(bought),
            "revenue_total_units": money(bought, "amount") - money(back, "amount"),
            "margin_total_units": money(bought, "margin") - money(back, "margin"),
            "cost_total_units": cost(talks),
            "first_purchase_at": min((f.occurred_at for f in bought), default=None),
            "last_purchase_at": max((f.occurred_at for f in bought), default=None),
            "purchases_all_currencies": len(mine),
            "last_purchase_any_at": max((f.occurred_at for f in mine), default=None),
            "year_before": any(two_years_ago <= f.occurred_at < year_ago for f in bought),
            "last_year": any(f.occurred_at >= year_ago for f in bought),
        }
    rows = list(out.values())
    contact = {id(row): contact_id for contact_id, row in out.items()}

    # ABC
    ranked = sorted((r for r in rows if r["revenue_window_units"] > 0),
                    key=lambda r: (-r["revenue_window_units"], contact[id(r)]))
    total = sum(r["revenue_window_units"] for r in ranked)
    cumulative = 0
    for rank, r in enumerate(ranked, 1):
        before = cumulative
        cumulative += r["revenue_window_units"]
        r["abc_rank"], r["abc_cumulative_units"] = rank, cumulative
        r["abc_class"] = ("A" if before < params.abc_a_share * total
                          else "B" if before < params.abc_b_share * total else "C")
    # RFM
    buyers = [r for r in rows if r["purchases_window"] >= 1]
    for score, key in (("recency_score", "last_purchase_at"), ("frequency_score", "purchases_window"),
                       ("monetary_score", "revenue_window_units")):
        for position, r in enumerate(sorted(buyers, key=lambda r: (r[key], contact[id(r)]))):
            r[score] = ntile(position, len(buyers))
    for r in buyers:
        rs, fs, ms = r["recency_score"], r["frequency_score"], r["monetary_score"]
        r["rfm_segment"] = ("champions" if rs >= 4 and fs >= 4 and ms >= 4 else "loyal" if rs >= 3 and fs >= 4
                            else "new" if rs >= 4 and fs == 1 else "potential" if rs >= 4
                            else "at_risk" if rs <= 2 and fs >= 3 else "hibernating" if rs <= 2
                            else "needs_attention")
    # CLV
    customers = [r for r in rows if r["purchase_count"] >= 1]
    p1 = [r for r in customers if r["year_before"]]
    retention = Decimal(sum(r["last_year"] for r in p1)) / len(p1) if p1 else params.default_retention
    retention = min(retention, params.max_retention)
    with localcontext() as ctx:
        ctx.prec = 50
        for r in customers:
            seconds = Decimal((as_of - r["first_purchase_at"]).total_seconds())
            tenure_years = max(seconds / 86400, Decimal(params.min_tenure_days)) / 365
            annual_margin = Decimal(r["margin_total_units"]) / tenure_years
            predicted = annual_margin * retention / (1 + params.discount_rate - retention)
            if r["last_purchase_any_at"] < lapsed:
                predicted = Decimal(0)
            r["predicted_margin_units"] = int(predicted.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
            r["clv_units"] = r["margin_total_units"] + r["predicted_margin_units"] - r["cost_total_units"]
    # the profitability matrix (lower medians)
    for r in customers:
        r["current_profit_units"] = r["margin_window_units"] - r["cost_window_units"]

    def threshold(key, given):
        if given != "median":
            return units(given)
        values = sorted(r[key] for r in customers)
        return values[(len(values) - 1) // 2]  # the lower median

    high_current = threshold("current_profit_units", params.current_threshold)
    high_future = threshold("predicted_margin_units", params.future_threshold)
    for r in customers:
        now, later = r["current_profit_units"] > high_current, r["predicted_margin_units"] > high_future
        r["quadrant"] = ("best" if now and later else "invest" if later else "hold" if now else "worst")
    # the pyramid
    active = sorted(buyers, key=lambda r: (-r["revenue_window_units"], contact[id(r)]))
    cuts = []
    share = Decimal(0)
    for level, part in (("top", params.pyramid_top_share), ("big", params.pyramid_big_share),
                        ("medium", params.pyramid_medium_share)):
        share += part
        cuts.append((math.ceil(share * len(active)), level))
    for rank, r in enumerate(active, 1):
        r["pyramid_level"] = next((level for cut, level in cuts if rank <= cut), "small")
    for r in rows:
        if r["purchase_count"] == 0:
            r["pyramid_level"] = "prospect"
        elif r["purchases_window"] == 0:
            r["pyramid_level"] = "inactive"
    # the lifecycle
    for r in rows:
        n = r["purchases_all_currencies"]
        r["stage"] = ("prospect" if n == 0 else "lapsed" if r["last_purchase_any_at"] < lapsed else "new" if n == 1
                      else "loyal" if n >= params.loyal_min_purchases
                      else "repeater" if n >= params.repeater_min_purchases else "general")
    for r in rows:
        for key in MEASURED:
            r.setdefault(key, None)
    out["retention"] = retention
    return out


def as_measured(row: CustomerAnalytics) -> dict:
    return {key: getattr(row, key) for key in MEASURED}


def by_name(expected: dict, actual: dict, key: str) -> dict[str, object]:
    return {expected[contact_id]["name"]: getattr(row, key) for contact_id, row in actual.items()}


# -- the tests -------------------------------------------------------------------------------------------------

def test_every_measure_matches_the_hand_computed_values(db):
    ids = seed(db)
    params = Parameters().merged(OVERRIDES)
    expected = reference(ids, (PURCHASES, RETURNS, INTERACTIONS), AS_OF, params)

    done, actual = refresh(db)

    assert done.customers == len(PEOPLE) == len(actual)
    for contact_id, row in actual.items():
        want = {key: expected[contact_id][key] for key in MEASURED}
        assert as_measured(row) == want, expected[contact_id]["name"]

    # the reference's figures, checked by hand
    assert expected["retention"] == Decimal("0.6")  # of alice, bob, erin, leo and mallory, three came back
    classes = by_name(expected, actual, "abc_class")
    assert {name for name, c in classes.items() if c == "A"} == {"alice", "ken", "bob"}
    assert {name for name, c in classes.items() if c == "B"} == {"carol", "judy", "dave"}  # dave: 7400 < 7476.5
    assert {name for name, c in classes.items() if c == "C"} == {"leo", "ivan"}
    assert classes["nick"] is None  # everything returned: no revenue in the window
    assert by_name(expected, actual, "pyramid_level") == {
        "alice": "top", "ken": "big", "bob": "big", "carol": "medium", "judy": "medium", "dave": "medium",
        "leo": "small", "ivan": "small", "nick": "small", "erin": "inactive", "mallory": "inactive",
        "frank": "prospect", "grace": "prospect", "heidi": "prospect"}
    assert by_name(expected, actual, "stage") == {
        "alice": "loyal", "bob": "repeater", "carol": "general", "dave": "new", "erin": "lapsed", "frank": "prospect",
        "grace": "prospect", "heidi": "general", "ivan": "new", "judy": "loyal", "ken": "new", "leo": "general",
        "mallory": "lapsed", "nick": "new"}
    dave, erin, frank = actual[ids["dave"]], actual[ids["erin"]], actual[ids["frank"]]
    # margin 50, a year's margin x 0.6 / (1 + 0.1 - 0.6) = 60, no cost
    assert (dave.predicted_margin_units, dave.clv_units) == (600_000, 1_100_000)
    assert (erin.predicted_margin_units, erin.clv_units) == (0, 1_200_000)  # lapsed: 80 + 60 - 20 returned
    assert (frank.cost_total_units, frank.clv_units) == (110_000, None)  # a prospect's calls cost, it has no CLV
    carol = actual[ids["carol"]]
    assert (carol.revenue_window_units, carol.margin_window_units, carol.cost_window_units) == (
        6_000_000, 900_000, 250_000)


def test_other_parameters_move_the_cuts(db):
    ids = seed(db)
    overrides = {"window_days": 90, "abc_a_share": "0.5", "abc_b_share": "0.5", "current_threshold": "0",
                 "future_threshold": "100.5", "lapsed_after_days": 200, "repeater_min_purchases": 2,
                 "loyal_min_purchases": 9, "interaction_costs": {"complaint": "100"}, "max_retention": "0.5"}
    params = Parameters().merged(overrides)
    expected = reference(ids, (PURCHASES, RETURNS, INTERACTIONS), AS_OF, params)

    _, actual = refresh(db, overrides)

    for contact_id, row in actual.items():
        assert as_measured(row) == {key: expected[contact_id][key] for key in MEASURED}, expected[contact_id]["name"]
    assert expected["retention"] == Decimal("0.5")
    assert {row.abc_class for row in actual.values()} == {"A", "C", None}  # no B when both cuts are equal


def test_a_purchase_a_return_and_a_complaint_move_a_customer_after_the_next_refresh(db):
    ids = seed(db)
    dave = ids["dave"]
    _, before = refresh(db)
    assert (before[dave].abc_class, before[dave].stage, before[dave].clv_units) == ("B", "new", 1_100_000)

    add_facts(db, ids, purchases=[buy("dave", "3000", "600", "2026-05-15")])
    _, bought = refresh(db)
    # 650 margin; a year's worth (tenure still the minimum) x 1.2 = 780
    assert (bought[dave].abc_class, bought[dave].stage, bought[dave].clv_units) == ("A", "general", 14_300_000)
    assert bought[dave].abc_rank == 2  # 3,250 of revenue, after alice's 4,000

    add_facts(db, ids, returns=[buy("dave", "3000", "600", "2026-05-20")],
              interactions=[talk("dave", "complaint", "2026-05-21")])
    _, returned = refresh(db)
    # back to 250 of revenue and 50 of margin (60 predicted), less the complaint's 25
    assert (returned[dave].abc_class, returned[dave].stage, returned[dave].clv_units) == ("B", "general", 850_000)
    assert returned[dave].quadrant != bought[dave].quadrant
