"""Integration-event handlers of the partners service.

Partners consumes no events yet; its worker runs only the outbox relay. A handler added here must also be
bound in `services.common.broker.SUBSCRIPTIONS["partners"]`.
"""
from __future__ import annotations

from services.common.consumer import Handler

HANDLERS: dict[str, Handler] = {}
