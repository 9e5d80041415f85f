"""The Idempotency-Key rules (services.common.idempotency) that need no database: fingerprint, key, verdict."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from services.common.idempotency import (
    BUSY,
    COMPLETED,
    IN_FLIGHT,
    MISMATCH,
    PROCEED,
    REPLAY,
    canonical_body,
    fingerprint,
    judge,
    key_problem,
)

PATH = "/api/v1/loyalty/purchases"
NOW = datetime(2026, 3, 14, 12, 0, tzinfo=timezone.utc)


def test_the_same_json_in_another_key_order_or_spacing_has_the_same_fingerprint():
    a = fingerprint("POST", PATH, b'{"amount": "12.50", "currency": "EUR"}')
    b = fingerprint("post", PATH, b'{\n  "currency":"EUR",\n  "amount":"12.50"\n}')

    assert a == b and len(a) == 64


@pytest.mark.parametrize("method, path, body", [
    ("POST", PATH, b'{"amount": "12.51", "currency": "EUR"}'),
    ("POST", "/api/v1/loyalty/members", b'{"amount": "12.50", "currency": "EUR"}'),
    ("PUT", PATH, b'{"amount": "12.50", "currency": "EUR"}'),
    ("POST", PATH, b'{"amount": "12.5", "currency": "EUR"}'),
])
def test_a_different_method_path_or_value_changes_the_fingerprint(method, path, body):
    assert fingerprint(method, path, body) != fingerprint("POST", PATH, b'{"amount": "12.50", "currency": "EUR"}')


def test_a_body_that_is_not_json_is_fingerprinted_byte_for_byte():
    assert canonical_body(b"amount=12.50") == b"amount=12.50"
    assert fingerprint("POST", PATH, b"") == fingerprint("POST", PATH, None)


def test_unicode_is_kept_as_text_in_the_canonical_form():
    assert canonical_body('{"name": "Müller"}'.encode()) == '{"name":"Müller"}'.encode()


@pytest.mark.parametrize("key", ["8e0c6c1e-4a9b-4df0-9f1e-3b0c7d2a1f55", "a", "x" * 255, "order:1001/retry"])
def test_visible_ascii_keys_up_to_255_characters_are_accepted(key):
    assert key_problem(key) is None


@pytest.mark.parametrize("key", ["", "x" * 256, "with space", "tab\there", "ümlaut", None])
def test_empty_long_spaced_or_non_ascii_keys_are_refused(key):
    assert key_problem(key)


def verdict(*, stored="f1", status=COMPLETED, locked_until=None, request="f1"):
    return judge(stored_fingerprint=stored, status=status, locked_until=locked_until, request_fingerprint=request,
                 now=NOW)


def test_a_completed_key_with_the_same_request_is_replayed():
    assert verdict() == REPLAY


def test_a_key_reused_for_a_different_request_is_a_mismatch_even_while_in_flight():
    assert verdict(request="f2") == MISMATCH
    assert verdict(request="f2", status=IN_FLIGHT, locked_until=NOW + timedelta(seconds=30)) == MISMATCH


def test_a_key_whose_first_request_still_runs_is_busy():
    assert verdict(status=IN_FLIGHT, locked_until=NOW + timedelta(seconds=1)) == BUSY


def test_a_claim_whose_lease_expired_is_taken_over():
    assert verdict(status=IN_FLIGHT, locked_until=NOW - timedelta(seconds=1)) == PROCEED
    assert verdict(status=IN_FLIGHT, locked_until=NOW) == PROCEED
