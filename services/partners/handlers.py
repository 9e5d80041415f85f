"""Integration-event handlers of the partners service.

Partners consumes no events yet; its worker runs only the outbox relay. The suite registry binds the partners
queue to exactly the event types listed here, so a handler added here is all it takes to receive an event.
"""
from __future__ import annotations

from services.common.consumer import Handler

HANDLERS: dict[str, Handler] = {}
