"""The `stages` step on SQLite (the ORM path): the same changes and events as on PostgreSQL, in batches."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from crm_plugins import hookimpl
from crm_plugins.testing import make_host
from sqlalchemy import delete, select

from services.common.catalog import parse_event
from services.contacts.analytics.params import Parameters
from services.contacts.analytics.stages import apply_stages
from services.contacts.models import (
    AnalyticsRefresh,
    Contact,
    ContactStage,
    CustomerAnalytics,
    OutboxMessage,
)

AS_OF = datetime(2026, 6, 1, tzinfo=UTC)


class Lapsing:
    """A fake plugin: one purchase and quiet for 60 days is lapsed already."""

    @hookimpl
    def crm_lifecycle_stage(self, customer):
        quiet = customer.days_since_last_purchase
        return "lapsed" if customer.purchase_count == 1 and quiet is not None and quiet >= 60 else None


def _contacts(runtime, n: int) -> list[uuid.UUID]:
    with runtime.session_factory() as s, s.begin():
        rows = [Contact(email=f"c{i}@example.com", email_normalized=f"c{i}@example.com") for i in range(n)]
        s.add_all(rows)
        s.flush()
        return sorted(c.id for c in rows)


def _snapshot(runtime, stages: dict, *, quiet_days: dict | None = None) -> AnalyticsRefresh:
    quiet_days = quiet_days or {}
    with runtime.session_factory() as s, s.begin():
        refresh = AnalyticsRefresh(currency="EUR", as_of=AS_OF, parameters={}, trigger="api", requested_by="test",
                                   status="completed", steps_total=11, summary={}, timings={})
        s.add(refresh)
        s.flush()
        for contact_id, stage in stages.items():
            s.add(CustomerAnalytics(refresh_id=refresh.id, contact_id=contact_id, purchase_count=1,
                                    purchases_all_currencies=1, stage=stage, stage_source="rules",
                                    last_purchase_any_at=AS_OF - timedelta(days=quiet_days.get(contact_id, 5))))
        s.expunge(refresh)
    return refresh


def _apply(runtime, refresh, plugins=None, **options) -> int:
    with runtime.uow() as uow:
        changed = apply_stages(uow, refresh, Parameters(), plugins, **options)
        uow.commit()
    return changed


def _events(runtime) -> list:
    with runtime.session_factory() as s:
        return [parse_event(p) for p in s.scalars(select(OutboxMessage.payload).order_by(OutboxMessage.seq))]


def test_changes_are_published_once_in_batches_and_recorded(runtime):
    ids = _contacts(runtime, 5)
    first = _snapshot(runtime, dict.fromkeys(ids, "new"))

    assert _apply(runtime, first, batch_rows=2) == 5
    assert {(e.data["contact_id"], e.data["previous_stage"], e.data["stage"]) for e in _events(runtime)} == {
        (cid, None, "new") for cid in ids}

    with runtime.session_factory() as s, s.begin():
        s.execute(delete(OutboxMessage))
    second = _snapshot(runtime, {**dict.fromkeys(ids, "new"), ids[1]: "general", ids[4]: "general"})

    assert _apply(runtime, second, batch_rows=2) == 2
    assert sorted((e.data["contact_id"], e.data["previous_stage"], e.data["stage"]) for e in _events(runtime)) == \
        sorted([(ids[1], "new", "general"), (ids[4], "new", "general")])
    with runtime.session_factory() as s:
        rows = {r.contact_id: (r.stage, r.refresh_id) for r in s.scalars(select(ContactStage))}
    assert rows[ids[1]] == ("general", second.id) and rows[ids[0]] == ("new", first.id)


def test_a_plugin_decides_on_sqlite_too_and_erased_contacts_are_forgotten(runtime):
    quiet, recent, gone = _contacts(runtime, 3)
    _apply(runtime, _snapshot(runtime, {gone: "new"}))
    with runtime.session_factory() as s, s.begin():
        s.execute(delete(Contact).where(Contact.id == gone))

    refresh = _snapshot(runtime, {quiet: "new", recent: "new"}, quiet_days={quiet: 90})
    _apply(runtime, refresh, make_host(Lapsing(), names=["early_lapse"]))

    by_contact = {e.data["contact_id"]: (e.data["stage"], e.data["source"]) for e in _events(runtime)[1:]}
    assert by_contact == {quiet: ("lapsed", "early_lapse"), recent: ("new", "rules")}
    with runtime.session_factory() as s:
        assert set(s.scalars(select(ContactStage.contact_id))) == {quiet, recent}
