"""The refresh runner on PostgreSQL: steps and progress, leases lost and taken over, one claim per refresh, one
running refresh per currency, pruning, failures."""
from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

from services.common.problems import Conflict, Unprocessable
from services.contacts.analytics import measures
from services.contacts.analytics.refresh import STEPS, LeaseLost, RefreshRunner
from services.contacts.analytics.snapshots import current_refresh_id
from services.contacts.erasure import erase_contact
from services.contacts.merges import merge_contacts
from services.contacts.models import AnalyticsRefresh, Contact, ContactPurchase, ContactStage, CustomerAnalytics

pytestmark = pytest.mark.integration

AS_OF = datetime(2026, 6, 1, tzinfo=timezone.utc)


@pytest.fixture
def contacts(runtime) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(5)]
    with runtime.session_factory() as s, s.begin():
        s.add_all(Contact(id=i, email=f"c{n}@example.com", email_normalized=f"c{n}@example.com")
                  for n, i in enumerate(ids))
        s.add_all(ContactPurchase(purchase_id=uuid.uuid4(), contact_id=i, amount=Decimal(10 * (n + 1)),
                                  currency="EUR", occurred_at=AS_OF - timedelta(days=n + 1))
                  for n, i in enumerate(ids))
    return ids


def request(runner, currency="EUR", **options):
    return runner.request(currency=currency, parameters=options.pop("parameters", None), as_of=AS_OF,
                          trigger="api", requested_by="test", **options)


def rows(runtime, refresh_id) -> int:
    with runtime.session_factory() as s:
        return s.scalar(select(func.count()).select_from(CustomerAnalytics)
                        .where(CustomerAnalytics.refresh_id == refresh_id))


def state(runtime, refresh_id) -> AnalyticsRefresh:
    with runtime.session_factory() as s:
        return s.scalar(select(AnalyticsRefresh).where(AnalyticsRefresh.id == refresh_id))


def expire_lease(runtime, refresh_id) -> None:
    """What time does to a dead runner's lease."""
    with runtime.session_factory() as s, s.begin():
        s.execute(update(AnalyticsRefresh).where(AnalyticsRefresh.id == refresh_id)
                  .values(lease_until=datetime.now(timezone.utc) - timedelta(seconds=1)))


def test_a_refresh_runs_every_step_in_order_recording_its_progress(runtime, contacts):
    runner = RefreshRunner(runtime)
    requested = request(runner)
    assert (requested.status, requested.steps_done, requested.steps_total) == ("pending", 0, len(STEPS))
    assert runner.claim() == requested.id
    seen = []

    done = runner.run(requested.id, on_step=lambda r: seen.append((r.step, r.steps_done, r.status)))

    assert seen == [(step, n, "completed" if step == "finish" else "running") for n, step in enumerate(STEPS, 1)]
    assert (done.status, done.customers, done.error, done.lease_owner) == ("completed", 5, None, None)
    assert set(done.timings) == set(STEPS) and all(seconds >= 0 for seconds in done.timings.values())
    assert done.finished_at is not None and done.started_at is not None
    assert rows(runtime, done.id) == 5
    with runtime.session_factory() as s:
        assert s.scalar(select(current_refresh_id("EUR"))) == done.id
        assert s.scalar(select(current_refresh_id("USD"))) is None


def test_two_runners_claim_one_refresh_once(runtime, contacts):
    requested = request(RefreshRunner(runtime))
    runners = [RefreshRunner(runtime) for _ in range(8)]
    barrier = threading.Barrier(len(runners))
    claims: list = []

    def claim(runner):
        barrier.wait()
        claims.append(runner.claim())

    threads = [threading.Thread(target=claim, args=(runner,)) for runner in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert claims.count(requested.id) == 1 and claims.count(None) == 7


def test_only_one_refresh_of_a_currency_runs_at_a_time(runtime, contacts):
    first, second = RefreshRunner(runtime), RefreshRunner(runtime)
    eur = request(first)
    later_eur = request(first)
    usd = request(first, "USD")

    assert first.claim() == eur.id
    assert second.claim() == usd.id  # the second EUR refresh waits for the first
    assert second.claim() is None
    with pytest.raises(Conflict):
        second.run_here(later_eur.id)

    first.run(eur.id)
    assert second.claim() == later_eur.id


def test_a_lost_lease_is_taken_over_and_the_refresh_restarts_from_base(runtime, contacts):
    dead, alive = RefreshRunner(runtime), RefreshRunner(runtime)
    requested = request(dead)
    assert dead.claim() == requested.id
    taken = []

    def stall_after_rfm(refresh):
        if refresh.step == "rfm":  # the first runner stalls here; its lease runs out and another claims it
            expire_lease(runtime, refresh.id)
            taken.append(alive.claim())

    with pytest.raises(LeaseLost):
        dead.run(requested.id, on_step=stall_after_rfm)
    assert taken == [requested.id]
    assert rows(runtime, requested.id) == 5  # the partial snapshot is still there...

    seen = []
    done = alive.run(requested.id, on_step=lambda r: seen.append(r.step))

    assert seen == list(STEPS)  # ... and the new runner starts again from base, replacing it
    assert (done.status, done.customers, done.steps_done) == ("completed", 5, len(STEPS))
    assert rows(runtime, done.id) == 5
    with pytest.raises(LeaseLost):
        dead.run(requested.id)


def test_a_stopped_runner_releases_its_refresh_for_another(runtime, contacts):
    first, second = RefreshRunner(runtime), RefreshRunner(runtime)
    requested = request(first)
    first.claim()
    stop = threading.Event()

    stopped = first.run(requested.id, on_step=lambda r: r.step == "abc" and stop.set(), stop=stop)

    assert (stopped.status, stopped.steps_done, stopped.lease_owner) == ("running", 2, None)
    assert second.claim() == requested.id
    assert second.run(requested.id).status == "completed"


def test_two_completed_snapshots_are_kept_per_currency(runtime, contacts):
    runner = RefreshRunner(runtime)
    done = [runner.run_here(request(runner).id) for _ in range(3)]
    usd = runner.run_here(request(runner, "USD").id)

    statuses = [state(runtime, r.id).status for r in done]
    assert statuses == ["superseded", "completed", "completed"]
    assert [rows(runtime, r.id) for r in done] == [0, 5, 5]
    assert (state(runtime, usd.id).status, rows(runtime, usd.id)) == ("completed", 5)
    with runtime.session_factory() as s:
        assert s.scalar(select(current_refresh_id("EUR"))) == done[-1].id


def test_a_failing_step_fails_the_refresh_with_its_error_and_drops_its_rows(runtime, contacts, monkeypatch):
    def broken(session, refresh, params):
        raise RuntimeError("the pass broke")

    monkeypatch.setitem(measures.PASSES, "clv", broken)
    runner = RefreshRunner(runtime)

    failed = runner.run_here(request(runner).id)

    assert (failed.status, failed.step, failed.steps_done) == ("failed", "clv", 3)
    assert failed.error == "The clv step failed: RuntimeError: the pass broke"
    assert (failed.lease_owner, rows(runtime, failed.id)) == (None, 0)
    assert runner.claim() is None  # a failed refresh is not run again
    monkeypatch.undo()
    assert runner.run_here(request(runner).id).status == "completed"  # nor does it block the currency


def test_a_scheduled_slot_is_requested_once(runtime, contacts):
    runner = RefreshRunner(runtime)
    first = request(runner, schedule_slot=42)
    again = request(runner, schedule_slot=42)
    other = request(runner, "USD", schedule_slot=42)

    assert again.id == first.id and other.id != first.id


def test_invalid_overrides_and_currencies_are_refused_by_name(runtime):
    runner = RefreshRunner(runtime)
    with pytest.raises(Unprocessable) as refused:
        request(runner, parameters={"abc_a_share": "0.9", "abc_b_share": "0.5", "window_days": "many"})
    assert set(refused.value.extra["errors"]) == {"parameters.window_days"}  # one field at a time, then the pair
    with pytest.raises(Unprocessable) as refused:
        request(runner, parameters={"abc_a_share": "0.9", "abc_b_share": "0.5"})
    assert set(refused.value.extra["errors"]) == {"parameters.abc_b_share"}
    with pytest.raises(Unprocessable) as refused:
        request(runner, "EURO")
    assert set(refused.value.extra["errors"]) == {"currency"}
    with runtime.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(AnalyticsRefresh)) == 0


def test_a_merge_drops_the_merged_contacts_measures_and_an_erasure_the_persons(runtime, contacts):
    survivor, merged, erased, *others = contacts
    runner = RefreshRunner(runtime)
    done = runner.run_here(request(runner).id)
    with runtime.session_factory() as s:
        assert set(s.scalars(select(ContactStage.contact_id))) == set(contacts)

    moved = merge_contacts(runtime.uow(), survivor, merged, actor="test")["moved"]
    erase_contact(runtime.uow(), erased, requested_by="test")

    assert (moved["customer_analytics"], moved["contact_stages"]) == (1, 1)
    with runtime.session_factory() as s:
        left = set(s.scalars(select(CustomerAnalytics.contact_id).where(CustomerAnalytics.refresh_id == done.id)))
        staged = set(s.scalars(select(ContactStage.contact_id)))
    assert left == staged == {survivor, *others}  # the survivor's stay until the next refresh
    again = runner.run_here(request(runner).id)
    with runtime.session_factory() as s:
        row = s.scalar(select(CustomerAnalytics).where(CustomerAnalytics.refresh_id == again.id,
                                                       CustomerAnalytics.contact_id == survivor))
    assert (row.purchase_count, row.revenue_total_units) == (2, 300_000)  # 10 + 20: both contacts' purchases
