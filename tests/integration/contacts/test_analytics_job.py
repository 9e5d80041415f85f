"""The contacts worker's analytics job on the real PostgreSQL: it runs pending refreshes and asks for scheduled ones."""
from __future__ import annotations

import dataclasses
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from services.contacts.analytics.jobs import AnalyticsJob, schedule_slot
from services.contacts.analytics.refresh import STEPS, RefreshRunner
from services.contacts.models import AnalyticsRefresh

pytestmark = pytest.mark.integration

HOUR = 3600.0
NOW = datetime(2026, 6, 1, 10, 30, tzinfo=UTC)


def _with_interval(runtime, seconds: float):
    return dataclasses.replace(runtime, settings=runtime.settings.replace(analytics_refresh_interval=seconds))


def _refreshes(runtime) -> list[AnalyticsRefresh]:
    with runtime.session_factory() as s:
        return list(s.scalars(select(AnalyticsRefresh).order_by(AnalyticsRefresh.seq)))


def test_the_job_runs_a_pending_refresh_to_the_end(runtime):
    requested = RefreshRunner(runtime).request(currency="EUR", parameters=None, as_of=None, trigger="api",
                                               requested_by="test")
    job = AnalyticsJob(runtime)

    assert job.run_once() is True

    (refresh,) = _refreshes(runtime)
    assert refresh.id == requested.id
    assert (refresh.status, refresh.steps_done, refresh.step) == ("completed", len(STEPS), "finish")
    assert refresh.lease_owner is None and refresh.finished_at is not None
    assert job.run_once() is False  # nothing left to claim


def test_the_schedule_asks_for_exactly_one_refresh_per_slot_with_two_jobs_racing(runtime):
    scheduled = _with_interval(runtime, HOUR)
    jobs = [AnalyticsJob(scheduled), AnalyticsJob(scheduled)]
    slots = [NOW + timedelta(hours=h) for h in range(4)]
    answers: list[list] = [[], []]
    barrier = threading.Barrier(2)

    def ask(index: int) -> None:
        for moment in slots:
            barrier.wait()  # both jobs ask for the same slot at the same moment
            answers[index].append(jobs[index].check_schedule(now=moment).id)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    rows = _refreshes(runtime)
    assert sorted(r.schedule_slot for r in rows) == [schedule_slot(m, HOUR) for m in slots]
    assert {(r.trigger, r.currency, r.status, r.requested_by) for r in rows} == {("schedule", "EUR", "pending",
                                                                                 "schedule")}
    assert answers[0] == answers[1] == [r.id for r in sorted(rows, key=lambda r: r.schedule_slot)]


def test_a_slot_is_asked_for_once_however_often_the_job_looks(runtime):
    job = AnalyticsJob(_with_interval(runtime, HOUR))

    first = job.check_schedule(now=NOW)
    again = job.check_schedule(now=NOW + timedelta(minutes=29))  # same hour: 10:00 - 11:00
    next_slot = job.check_schedule(now=NOW + timedelta(minutes=30))

    assert again.id == first.id and next_slot.id != first.id
    assert next_slot.schedule_slot == first.schedule_slot + 1
    assert len(_refreshes(runtime)) == 2


def test_an_interval_of_zero_schedules_nothing(runtime):
    assert AnalyticsJob(_with_interval(runtime, 0)).check_schedule(now=NOW) is None
    assert _refreshes(runtime) == []


def test_the_running_job_asks_for_the_scheduled_refresh_and_runs_it(runtime):
    job = AnalyticsJob(_with_interval(runtime, HOUR), poll_interval=0.05)
    stop = threading.Event()
    thread = threading.Thread(target=job.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            rows = _refreshes(runtime)
            if rows and rows[0].status == "completed":
                break
            stop.wait(0.05)  # polling the database for the job's outcome, not waiting out a race
    finally:
        stop.set()
        thread.join(timeout=30)

    (refresh,) = _refreshes(runtime)
    assert (refresh.trigger, refresh.status) == ("schedule", "completed")
    assert refresh.schedule_slot is not None
    assert not thread.is_alive()


def test_the_contacts_worker_runs_refreshes_asked_for_over_the_api(client, contacts_settings, amqp_url):
    from crm.registry import SUITE
    from tests.support.auth import identity_headers
    from tests.support.suite import wait_until

    worker = SUITE.create_worker("contacts", contacts_settings)  # on this test's vhost (it asks for amqp_url)
    worker.start()
    try:
        assert worker.threads_alive()["analytics"] is True
        asked = client.post("/api/v1/analytics/refreshes", json={}, headers=identity_headers("contacts:analytics"))
        assert asked.status_code == 202, asked.get_data(as_text=True)
        url, reader = asked.headers["Location"], identity_headers("contacts:read")
        wait_until(lambda: client.get(url, headers=reader).json["status"] == "completed", timeout=60,
                   message="the worker to complete the refresh")
        # The worker also asked for the day's scheduled refresh when it started (CRM_ANALYTICS_REFRESH_INTERVAL).
        triggers = {r["trigger"] for r in client.get("/api/v1/analytics/refreshes", headers=reader).json["items"]}
        assert triggers == {"api", "schedule"}
    finally:
        worker.stop()
        worker.runtime.engine.dispose()
