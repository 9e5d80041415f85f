"""The services' plugin host gives every plugin call a time budget, on bounded threads of that plugin's own.

No test here measures time: a slow plugin waits on an Event the test sets only after it has checked the
decision, so "the decision came back while the plugin was still running" is a fact, not a race. Budgets are
generous (half a second) wherever a healthy plugin must answer within them on a loaded machine.
"""
from __future__ import annotations

import json
import logging
import threading
import time

import pytest
from crm_plugins import LeadInput, ScoreFactor, hookimpl
from crm_plugins.host import PluginHost

from services.common.plugin_calls import BudgetedPluginHost, PluginLane
from services.common.plugins import build_plugin_host
from services.common.settings import SettingsError, from_env

LEAD = LeadInput(email="ada@engines.example")
BUDGET = 0.5  # seconds; a healthy plugin answers in microseconds
PATIENCE = 10.0  # the longest a test waits for a released plugin to finish


class Fixed:
    """Contributes one fixed factor at once."""

    def __init__(self, points: int = 10):
        self.points = points

    @hookimpl
    def crm_score_lead(self, lead):
        return ScoreFactor("fixed", self.points, f"always {self.points}")


class Sleepy:
    """Blocks in its call until the test releases it, then contributes a factor."""

    def __init__(self):
        self.release = threading.Event()
        self.entered = threading.Event()
        self.returned = threading.Event()
        self.calls = 0

    @hookimpl
    def crm_score_lead(self, lead):
        self.calls += 1
        self.entered.set()
        # Bounded, so a broken host fails the test instead of hanging the run.
        self.release.wait(timeout=60)
        self.returned.set()
        return ScoreFactor("sleepy", 1, "answered in the end")


def budgeted(*named_plugins, timeout=BUDGET, threads_per_plugin=2) -> BudgetedPluginHost:
    host = BudgetedPluginHost(timeout=timeout, threads_per_plugin=threads_per_plugin)
    for name, plugin in named_plugins:
        host.register(plugin, name=name)
    host.check()
    return host


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.01)


def codes(decision) -> dict[str, str]:
    return {failure.plugin: failure.code for failure in decision.degraded}


@pytest.fixture
def sleepy():
    plugin = Sleepy()
    yield plugin
    plugin.release.set()  # never leave a thread blocked behind a failed test


def test_plugins_that_answer_at_once_decide_exactly_as_on_the_plain_host():
    plain = PluginHost()
    plain.register(Fixed(30), name="a")
    plain.register(Fixed(12), name="b")

    decision = budgeted(("a", Fixed(30)), ("b", Fixed(12))).score_lead(LEAD)

    assert decision == plain.score_lead(LEAD)
    assert decision.score == 42 and not decision.degraded


def test_a_sleeping_plugin_is_dropped_as_plugin_timeout_while_it_still_sleeps(sleepy, caplog):
    # One thread for the sleeper: the other plugin answers from its own threads all the same.
    host = budgeted(("sleepy", sleepy), ("steady", Fixed(10)), threads_per_plugin=1)

    with caplog.at_level(logging.ERROR, logger="crm.plugins"):
        decision = host.score_lead(LEAD)

    assert not sleepy.returned.is_set()
    assert codes(decision) == {"sleepy": "plugin_timeout"}
    assert sleepy.entered.wait(PATIENCE), "the plugin was called"
    assert decision.degraded[0].hook == "crm_score_lead"
    assert [(f.plugin, f.points) for f in decision.factors] == [("steady", 10)]
    assert any(getattr(r, "plugin", None) == "sleepy" and "500 ms" in r.getMessage() for r in caplog.records)


def test_while_a_late_call_runs_its_plugin_is_skipped_at_once_and_called_again_once_it_returns(sleepy, caplog):
    host = budgeted(("sleepy", sleepy), ("steady", Fixed(10)))
    assert codes(host.score_lead(LEAD)) == {"sleepy": "plugin_timeout"}

    skipped = host.score_lead(LEAD)

    assert codes(skipped) == {"sleepy": "plugin_unavailable"}
    assert skipped.score == 10
    assert sleepy.calls == 1, "a call was queued behind the one still running"
    assert {p["name"]: p["available"] for p in host.list_plugins()} == {"sleepy": False, "steady": True}

    with caplog.at_level(logging.WARNING, logger="crm.plugins"):
        sleepy.release.set()
        wait_until(lambda: host.lane("sleepy").available, "the late call to return")
    assert any("returned" in r.getMessage() and getattr(r, "plugin", None) == "sleepy" for r in caplog.records)

    recovered = host.score_lead(LEAD)

    assert not recovered.degraded and recovered.score == 11
    assert sleepy.calls == 2


@pytest.mark.parametrize("error", [RuntimeError, SystemExit, KeyboardInterrupt])
def test_what_a_plugin_raises_on_its_thread_is_plugin_error_and_its_text_is_only_logged(error, caplog):
    marker = "SECRET-MARKER-7f3a"

    class Leaky:
        @hookimpl
        def crm_score_lead(self, lead):
            raise error(f"db password {marker}")

    host = budgeted(("leaky", Leaky()), ("steady", Fixed(5)))

    with caplog.at_level(logging.ERROR, logger="crm.plugins"):
        decision = host.score_lead(LEAD)

    assert codes(decision) == {"leaky": "plugin_error"} and decision.score == 5
    assert marker not in json.dumps(decision.to_dict())
    (record,) = [r for r in caplog.records if getattr(r, "plugin", None) == "leaky"]
    assert record.exc_info and marker in str(record.exc_info[1])


def test_two_sleeping_plugins_are_both_dropped_while_both_still_sleep():
    first, second = Sleepy(), Sleepy()
    host = budgeted(("first", first), ("second", second), ("steady", Fixed(3)))
    try:
        decision = host.score_lead(LEAD)

        assert not first.returned.is_set() and not second.returned.is_set()
        assert codes(decision) == {"first": "plugin_timeout", "second": "plugin_timeout"}
        assert decision.score == 3
    finally:
        first.release.set()
        second.release.set()


def test_build_plugin_host_gives_the_budget_of_the_setting():
    settings = from_env("leads", {"CRM_PLUGIN_TIMEOUT_MS": "350"}, require_secret=False)

    host = build_plugin_host(include_entry_points=False, timeout_ms=settings.plugin_timeout_ms)

    assert isinstance(host, BudgetedPluginHost) and host.timeout == pytest.approx(0.35)
    assert from_env("leads", {}, require_secret=False).plugin_timeout_ms == 200


@pytest.mark.parametrize("raw", ["0", "-5", "1.5", "soon", "60001"])
def test_a_malformed_plugin_timeout_stops_start_up_naming_the_variable(raw):
    with pytest.raises(SettingsError) as caught:
        from_env("leads", {"CRM_PLUGIN_TIMEOUT_MS": raw}, require_secret=False)
    assert caught.value.variable == "CRM_PLUGIN_TIMEOUT_MS"


# --- the lane: one plugin's threads -------------------------------------------------------------------------

def test_a_call_queued_behind_a_busy_thread_is_given_up_and_never_runs_late():
    lane = PluginLane("busy", threads=1)
    release, entered = threading.Event(), threading.Event()
    ran = []

    def block():
        entered.set()
        release.wait(timeout=60)

    try:
        running = lane.submit(block, ())
        assert entered.wait(PATIENCE)
        queued = lane.submit(ran.append, ("queued",))

        assert lane.outcome(queued, deadline=time.monotonic()) == (False, None, None)
        assert lane.available, "a call that never started does not make the plugin unavailable"
        assert lane.outcome(running, deadline=time.monotonic()) == (False, None, None)
        assert not lane.available
    finally:
        release.set()
    wait_until(lambda: lane.available, "the running call to return")

    later = lane.submit(ran.append, ("later",))

    assert lane.outcome(later, deadline=time.monotonic() + PATIENCE) == (True, None, None)
    assert ran == ["later"]


def test_a_lane_starts_threads_on_demand_up_to_its_bound_and_lets_idle_ones_go():
    lane = PluginLane("bounded", threads=2, idle_seconds=0.05)
    release = threading.Event()
    started = threading.Semaphore(0)

    def block():
        started.release()
        release.wait(timeout=60)
        return "done"

    def lane_threads():
        return [t for t in threading.enumerate() if t.name == "crm-plugin-bounded"]

    calls = [lane.submit(block, ()) for _ in range(5)]
    try:
        assert started.acquire(timeout=PATIENCE) and started.acquire(timeout=PATIENCE)
        assert len(lane_threads()) == 2
        assert all(t.daemon for t in lane_threads()), "a hung plugin must not keep the process from exiting"
    finally:
        release.set()

    assert [lane.outcome(c, time.monotonic() + PATIENCE) for c in calls] == [(True, "done", None)] * 5
    wait_until(lambda: not lane_threads(), "idle threads to stop")
