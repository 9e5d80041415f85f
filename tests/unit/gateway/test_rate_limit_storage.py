"""The gateway's in-process rate-limit storage: limits' moving window without a timer thread per request."""
from __future__ import annotations

import threading
import time

from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from services.gateway.ratelimits import SweptMemoryStorage


def _sweepers() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "rate-limit-sweeper")


def test_the_storage_is_chosen_by_its_uri_scheme():
    assert isinstance(storage_from_string("crm-memory://"), SweptMemoryStorage)


def test_a_thousand_counted_calls_start_one_sweeper_thread():
    before = _sweepers()
    limiter = MovingWindowRateLimiter(SweptMemoryStorage())
    for _ in range(1000):
        limiter.hit(parse("100000/minute"), "key:a")
    assert _sweepers() == before + 1


def test_the_moving_window_still_refuses_past_the_limit():
    limiter = MovingWindowRateLimiter(SweptMemoryStorage())
    limit = parse("3/minute")
    assert [limiter.hit(limit, "key:a") for _ in range(5)] == [True, True, True, False, False]
    assert limiter.hit(limit, "key:b"), "another key has its own window"


def test_a_sweep_drops_entries_whose_window_has_passed():
    storage = SweptMemoryStorage()
    limiter = MovingWindowRateLimiter(storage)
    limiter.hit(parse("2/second"), "key:a")
    time.sleep(1.05)  # the one-second window is certainly over
    storage.sweep()
    assert not storage.events.get("key:a")
