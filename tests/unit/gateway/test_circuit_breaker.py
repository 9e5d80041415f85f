"""The per-upstream circuit breaker: open after N failures, refuse for a while, then try once."""
from __future__ import annotations

import pytest

from services.gateway.proxy import CircuitBreaker, CircuitOpen


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        breaker.before_call()
        breaker.record_failure()


def test_the_circuit_opens_after_n_consecutive_failures():
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, open_seconds=10, clock=clock)
    _fail(breaker, 2)
    assert breaker.state == "closed"
    _fail(breaker, 1)
    assert breaker.state == "open"
    clock.now += 4
    with pytest.raises(CircuitOpen) as err:
        breaker.before_call()
    assert err.value.retry_after == pytest.approx(6)


def test_a_success_resets_the_failure_count():
    breaker = CircuitBreaker(failure_threshold=3, open_seconds=10, clock=FakeClock())
    _fail(breaker, 2)
    breaker.record_success()
    _fail(breaker, 2)
    assert breaker.state == "closed"


def test_after_the_open_time_one_trial_call_goes_through_and_success_closes_the_circuit():
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, open_seconds=5, clock=clock)
    _fail(breaker, 1)
    clock.now += 5
    assert breaker.state == "half-open"
    breaker.before_call()  # the trial
    with pytest.raises(CircuitOpen):
        breaker.before_call()  # others wait for the trial's outcome
    breaker.record_success()
    assert breaker.state == "closed"
    breaker.before_call()


def test_a_failed_trial_opens_the_circuit_again():
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=5, open_seconds=5, clock=clock)
    _fail(breaker, 5)
    clock.now += 6
    breaker.before_call()
    breaker.record_failure()  # one failure is enough in half-open
    assert breaker.state == "open"
    with pytest.raises(CircuitOpen):
        breaker.before_call()


@pytest.mark.parametrize("threshold, seconds", [(0, 1), (1, 0)])
def test_nonsensical_breaker_settings_are_refused(threshold, seconds):
    with pytest.raises(ValueError):
        CircuitBreaker(threshold, seconds)
