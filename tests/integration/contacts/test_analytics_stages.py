"""Lifecycle stages after a refresh on the real PostgreSQL: plugin overrides, crm.contact.stage_changed, contact_stages.

The snapshot rows are written here as the lifecycle step leaves them (a rule stage per contact), so these tests
pin the `stages` step itself; test_analytics_job.py runs whole refreshes.
"""
from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from crm_plugins import hookimpl
from crm_plugins.testing import make_host
from sqlalchemy import delete, select

from services.common.catalog import make_event, parse_event
from services.common.db import utcnow
from services.contacts import purchase_facts
from services.contacts.analytics.params import Parameters
from services.contacts.analytics.refresh import RefreshRunner
from services.contacts.analytics.stages import apply_stages
from services.contacts.models import (
    AnalyticsRefresh,
    Contact,
    ContactStage,
    CustomerAnalytics,
    OutboxMessage,
)

pytestmark = pytest.mark.integration

AS_OF = datetime(2026, 6, 1, tzinfo=UTC)
CHANGED = "crm.contact.stage_changed"


class Promotes:
    """A fake plugin: every `general` customer with 2 purchases is `repeater`."""

    @hookimpl
    def crm_lifecycle_stage(self, customer, stage):
        return "repeater" if stage == "general" and customer.purchase_count == 2 else None


class Raising:
    @hookimpl
    def crm_lifecycle_stage(self, customer):
        raise RuntimeError("stage service down")


def _contacts(runtime, n: int) -> list[uuid.UUID]:
    with runtime.session_factory() as s, s.begin():
        rows = [Contact(email=f"c{i}@example.com", email_normalized=f"c{i}@example.com") for i in range(n)]
        s.add_all(rows)
        s.flush()
        return sorted(c.id for c in rows)


def _snapshot(runtime, stages: dict[uuid.UUID, str], *, counts: dict | None = None) -> AnalyticsRefresh:
    """A refresh whose rows carry `stages` as the lifecycle step would leave them (completed: one refresh per
    currency may be running, and the step does not look at the status)."""
    counts = counts or {}
    with runtime.session_factory() as s, s.begin():
        refresh = AnalyticsRefresh(currency="EUR", as_of=AS_OF, parameters={}, trigger="api", requested_by="test",
                                   status="completed", steps_total=11, summary={}, timings={})
        s.add(refresh)
        s.flush()
        for contact_id, stage in stages.items():
            n = counts.get(contact_id, 1)
            s.add(CustomerAnalytics(refresh_id=refresh.id, contact_id=contact_id, purchase_count=n,
                                    purchases_all_currencies=n, last_purchase_any_at=AS_OF - timedelta(days=10),
                                    stage=stage, stage_source="rules"))
        s.expunge(refresh)
    return refresh


def _apply(runtime, refresh, plugins=None, **options) -> int:
    with runtime.uow() as uow:
        changed = apply_stages(uow, refresh, Parameters(), plugins, **options)
        uow.commit()
    return changed


def _stage_rows(runtime) -> dict[uuid.UUID, ContactStage]:
    with runtime.session_factory() as s:
        return {row.contact_id: row for row in s.scalars(select(ContactStage))}


def _published(runtime) -> list:
    """The stage_changed events in the outbox, parsed as a consumer would (so each is valid on the wire)."""
    with runtime.session_factory() as s:
        payloads = s.scalars(select(OutboxMessage.payload).where(OutboxMessage.event_type == CHANGED)
                             .order_by(OutboxMessage.seq)).all()
    return [parse_event(p) for p in payloads]


def _forget_published(runtime) -> None:
    with runtime.session_factory() as s, s.begin():
        s.execute(delete(OutboxMessage))


def test_a_first_refresh_publishes_one_change_per_contact_with_no_previous_stage(runtime):
    ids = _contacts(runtime, 3)
    stages = dict(zip(ids, ["new", "prospect", "loyal"]))
    refresh = _snapshot(runtime, stages)

    assert _apply(runtime, refresh) == 3

    events = _published(runtime)
    assert sorted((e.data["contact_id"], e.data["stage"]) for e in events) == sorted(stages.items())
    for event in events:
        assert event.subject == str(event.data["contact_id"])
        assert event.data["previous_stage"] is None and event.data["source"] == "rules"
        assert event.data["refresh_id"] == refresh.id and event.data["as_of"] == AS_OF
        assert event.source == "/services/contacts"
    assert len({e.id for e in events}) == 3
    rows = _stage_rows(runtime)
    assert {cid: (r.stage, r.previous_stage, r.source, r.refresh_id) for cid, r in rows.items()} == {
        cid: (stage, None, "rules", refresh.id) for cid, stage in stages.items()}


def test_a_second_refresh_without_changes_publishes_nothing(runtime):
    ids = _contacts(runtime, 2)
    _apply(runtime, _snapshot(runtime, dict(zip(ids, ["new", "general"]))))
    _forget_published(runtime)

    second = _snapshot(runtime, dict(zip(ids, ["new", "general"])))

    assert _apply(runtime, second) == 0
    assert _published(runtime) == []
    assert {r.previous_stage for r in _stage_rows(runtime).values()} == {None}


def test_a_contact_moving_from_new_to_general_publishes_exactly_one_change(runtime):
    mover, stayer = _contacts(runtime, 2)
    _apply(runtime, _snapshot(runtime, {mover: "new", stayer: "new"}))
    _forget_published(runtime)

    second = _snapshot(runtime, {mover: "general", stayer: "new"}, counts={mover: 2})

    assert _apply(runtime, second) == 1
    (event,) = _published(runtime)
    assert (event.data["contact_id"], event.data["previous_stage"], event.data["stage"]) == (mover, "new", "general")
    row = _stage_rows(runtime)[mover]
    assert (row.stage, row.previous_stage, row.refresh_id) == ("general", "new", second.id)


def test_a_plugin_override_wins_and_is_recorded_as_the_source(runtime):
    promoted, kept = _contacts(runtime, 2)
    refresh = _snapshot(runtime, {promoted: "general", kept: "general"}, counts={promoted: 2, kept: 4})

    _apply(runtime, refresh, make_host(Promotes(), names=["vip_rules"]))

    with runtime.session_factory() as s:
        snapshot = {r.contact_id: (r.stage, r.stage_source) for r in s.scalars(
            select(CustomerAnalytics).where(CustomerAnalytics.refresh_id == refresh.id))}
    assert snapshot == {promoted: ("repeater", "vip_rules"), kept: ("general", "rules")}
    by_contact = {e.data["contact_id"]: (e.data["stage"], e.data["source"]) for e in _published(runtime)}
    assert by_contact == {promoted: ("repeater", "vip_rules"), kept: ("general", "rules")}
    assert _stage_rows(runtime)[promoted].source == "vip_rules"


def test_a_raising_plugin_degrades_and_the_rule_stage_stands(runtime, caplog):
    (contact,) = _contacts(runtime, 1)
    refresh = _snapshot(runtime, {contact: "loyal"})

    assert _apply(runtime, refresh, make_host(Raising(), names=["broken"])) == 1

    (event,) = _published(runtime)
    assert (event.data["stage"], event.data["source"]) == ("loyal", "rules")
    assert any("broken (plugin_error) x1" in r.getMessage() for r in caplog.records)


def test_batches_take_every_change_once(runtime):
    ids = _contacts(runtime, 7)
    _apply(runtime, _snapshot(runtime, dict.fromkeys(ids[:3], "new")))
    _forget_published(runtime)

    # Unchanged rows (ids[:3] stay new) sit between the changing ones in contact order.
    second = _snapshot(runtime, {**dict.fromkeys(ids, "general"), ids[0]: "new", ids[2]: "new"})

    assert _apply(runtime, second, batch_rows=2) == 5
    events = _published(runtime)
    assert sorted(e.data["contact_id"] for e in events) == sorted(ids[1:2] + ids[3:])
    assert {cid: r.stage for cid, r in _stage_rows(runtime).items()} == {
        **dict.fromkeys(ids, "general"), ids[0]: "new", ids[2]: "new"}


def test_the_stage_of_a_contact_that_no_longer_exists_is_dropped(runtime):
    gone, kept = _contacts(runtime, 2)
    _apply(runtime, _snapshot(runtime, {gone: "new", kept: "new"}))
    with runtime.session_factory() as s, s.begin():
        s.execute(delete(Contact).where(Contact.id == gone))

    _apply(runtime, _snapshot(runtime, {kept: "new"}))

    assert set(_stage_rows(runtime)) == {kept}


def test_the_events_json_is_what_add_event_writes_for_the_same_change(runtime):
    (contact,) = _contacts(runtime, 1)
    refresh = _snapshot(runtime, {contact: "repeater"})
    _apply(runtime, refresh)
    with runtime.session_factory() as s:
        (written,) = s.scalars(select(OutboxMessage.payload).where(OutboxMessage.event_type == CHANGED)).all()

    expected = make_event(CHANGED, {"contact_id": contact, "stage": "repeater", "previous_stage": None,
                                    "source": "rules", "refresh_id": refresh.id, "as_of": AS_OF},
                          source=runtime.source, subject=contact)

    def comparable(payload: str) -> dict:
        return {k: v for k, v in json.loads(payload).items() if k not in ("id", "time")}

    assert comparable(written) == comparable(expected.to_json())
    assert uuid.UUID(json.loads(written)["id"]) and list(json.loads(written)) == list(json.loads(expected.to_json()))


# -- whole refreshes: purchases in, stages and events out ------------------------------------------------------

def _bought(runtime, contact_id, *, days_ago: int) -> None:
    purchase_facts.record_purchase(runtime.uow(), {
        "purchase_id": uuid.uuid4(), "contact_id": contact_id, "currency": "EUR", "amount": Decimal("20.00"),
        "margin": None, "occurred_at": utcnow() - timedelta(days=days_ago)})


def _refresh(runtime) -> AnalyticsRefresh:
    runner = RefreshRunner(runtime)
    requested = runner.request(currency="EUR", parameters=None, as_of=None, trigger="cli", requested_by="test")
    done = runner.run_here(requested.id)
    assert (done.status, done.error) == ("completed", None)
    return done


def _changes(runtime) -> list[tuple]:
    return sorted((e.data["contact_id"], e.data["previous_stage"], e.data["stage"], e.data["source"])
                  for e in _published(runtime))


def test_refreshes_publish_first_stages_then_only_what_a_purchase_changed(runtime):
    buyer, prospect = _contacts(runtime, 2)
    _bought(runtime, buyer, days_ago=30)

    _refresh(runtime)
    assert _changes(runtime) == sorted([(buyer, None, "new", "rules"), (prospect, None, "prospect", "rules")])

    _forget_published(runtime)
    _refresh(runtime)
    assert _published(runtime) == []

    _bought(runtime, buyer, days_ago=2)
    latest = _refresh(runtime)
    assert _changes(runtime) == [(buyer, "new", "general", "rules")]
    assert (_stage_rows(runtime)[buyer].stage, _stage_rows(runtime)[buyer].refresh_id) == ("general", latest.id)


def test_a_refresh_with_plugins_records_the_deciding_plugin_and_survives_a_broken_one(runtime):
    promoted, kept = _contacts(runtime, 2)
    for days_ago in (40, 20):
        _bought(runtime, promoted, days_ago=days_ago)  # 2 purchases: general, which Promotes makes repeater
    _bought(runtime, kept, days_ago=5)  # 1 purchase: new, left to the rules
    plugins = make_host(Promotes(), Raising(), names=["vip_rules", "broken"])

    done = _refresh(dataclasses.replace(runtime, plugins=plugins))

    assert _changes(runtime) == sorted([(promoted, None, "repeater", "vip_rules"), (kept, None, "new", "rules")])
    with runtime.session_factory() as s:
        stored = dict(s.execute(select(CustomerAnalytics.contact_id, CustomerAnalytics.stage_source)
                                .where(CustomerAnalytics.refresh_id == done.id)).all())
    assert stored == {promoted: "vip_rules", kept: "rules"}
