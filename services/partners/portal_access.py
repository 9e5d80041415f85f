"""The partner portal is open only to partners in good standing: suspended or terminated means no access.

Checked on every portal request, in the partners service that owns the status, so a suspension takes effect
with the commit that makes it: the next request is refused, whichever gateway instance forwards it and whatever
the gateway's key cache holds. Internal principals pass through to the views, whose `@requires` refuses them.
"""
from __future__ import annotations

import uuid

from flask import g
from sqlalchemy import select

from services.common.problems import problem_response
from services.common.web import runtime

from .models import Partner

# Statuses whose partners may use the portal; a partner in any other status is refused.
PORTAL_STATUSES = frozenset({"prospect", "onboarding", "active"})


def _status(partner_id: uuid.UUID) -> str | None:
    with runtime().uow(read_only=True) as uow:
        return uow.session.scalar(select(Partner.status).where(Partner.id == partner_id))


def check_portal_access():
    """A `before_request` hook of the portal blueprint: 403 for a partner that is not in good standing."""
    principal = getattr(g, "principal", None)
    if principal is None or principal.kind != "partner":
        return None  # no identity (already 401) or an internal key: the view's @requires answers
    try:
        partner_id = uuid.UUID(str(principal.partner_id))
    except ValueError:
        return problem_response(403, "Forbidden", "This key is bound to no valid partner.")
    status = _status(partner_id)
    if status is None:
        return problem_response(403, "Forbidden", "This key's partner does not exist.")
    if status not in PORTAL_STATUSES:
        return problem_response(403, "Forbidden", f"This partner is {status}: its portal access is closed.",
                                partner_status=status)
    return None
