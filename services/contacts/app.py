"""Composition root of the contacts service: the web app and the worker."""
from __future__ import annotations

from flask import Flask

from services.common.broker import Bindings
from services.common.runtime import Runtime, build_runtime
from services.common.settings import Settings, from_env
from services.common.web import create_service_app, runtime_readiness
from services.common.worker import Worker

from . import api, handlers

# The contacts API, one blueprint per part of the customer record.
BLUEPRINTS = (
    api.blp,
)
from .models import InboxEntry, OutboxMessage


def build(settings: Settings | None = None) -> Runtime:
    """Engine, session factory and outbox/inbox models of one contacts process."""
    return build_runtime(settings or from_env("contacts"), OutboxMessage, InboxEntry)


def create_app(settings: Settings | None = None) -> Flask:
    """The contacts web application."""
    runtime = build(settings)
    return create_service_app("contacts", title="CRM Contacts", blueprints=list(BLUEPRINTS), settings=runtime.settings,
                              readiness=runtime_readiness(runtime), extensions={"crm.runtime": runtime})


def create_worker(settings: Settings | None = None, *, bindings: Bindings) -> Worker:
    """The contacts worker: outbox relay plus the crm.lead.converted and crm.purchase.recorded consumer."""
    return Worker(build(settings), handlers.HANDLERS, bindings)
