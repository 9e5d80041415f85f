"""Partner rules without I/O: which status moves are allowed, which terms hold together, what changed."""
from __future__ import annotations

from decimal import Decimal

from services.common.problems import Conflict

from .models import TERM_FIELDS

FINAL_STATUSES = frozenset({"terminated"})

# Where a partner may go from each status. Terminated is final; anything may be terminated.
STATUS_TRANSITIONS: dict[str, frozenset[str]] = {
    "prospect": frozenset({"onboarding", "terminated"}),
    "onboarding": frozenset({"active", "prospect", "terminated"}),
    "active": frozenset({"suspended", "terminated"}),
    "suspended": frozenset({"active", "terminated"}),
    "terminated": frozenset(),
}

# The statuses a partner may be created in; the others are reached only through transitions.
INITIAL_STATUSES = ("prospect", "onboarding", "active")


def can_move(current: str, target: str) -> bool:
    """True when a partner in `current` may move to `target` (staying put is always allowed)."""
    return current == target or target in STATUS_TRANSITIONS.get(current, frozenset())


def check_transition(current: str, target: str) -> None:
    """Raise Conflict (409) when the move is not allowed."""
    if current in FINAL_STATUSES and target != current:
        raise Conflict(f"A {current} partner is final; it cannot move to {target}.", current_status=current)
    if not can_move(current, target):
        allowed = ", ".join(sorted(STATUS_TRANSITIONS.get(current, ()))) or "nothing"
        raise Conflict(f"A {current} partner cannot move to {target}; it may move to {allowed}.",
                       current_status=current)


def terms_errors(terms: dict) -> dict[str, list[str]]:
    """Rules across fields of one set of terms; checks only what `terms` holds. Empty when they hold together."""
    errors: dict[str, list[str]] = {}
    start, end = terms.get("effective_from"), terms.get("effective_to")
    if start is not None and end is not None and end <= start:
        errors.setdefault("effective_to", []).append("Must be after effective_from.")
    if terms.get("auto_renew") and "effective_to" in terms and end is None:
        errors.setdefault("effective_to", []).append("An auto-renewing contract needs an end date to renew at.")
    return errors


def changed_terms(old: dict, new: dict) -> list[str]:
    """The term fields whose values differ, in the canonical order (2.5 and 2.50 are the same value)."""
    return [name for name in TERM_FIELDS if name in new and not _same(old.get(name), new[name])]


def _same(a, b) -> bool:
    if isinstance(a, Decimal) or isinstance(b, Decimal):
        return a is not None and b is not None and Decimal(a) == Decimal(b)
    return a == b

