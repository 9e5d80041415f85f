"""Composition root of the partners service: the web app and the worker."""
from __future__ import annotations

from flask import Flask

from services.common.broker import Bindings
from services.common.runtime import Runtime, build_runtime
from services.common.settings import Settings, from_env
from services.common.web import create_service_app, runtime_readiness
from services.common.worker import Worker

from . import api, handlers
from .portal_access import check_portal_access
from .models import InboxEntry, OutboxMessage


def build(settings: Settings | None = None) -> Runtime:
    """Engine, session factory and outbox/inbox models of one partners process (no plugin hooks yet)."""
    settings = settings or from_env("partners")
    return build_runtime(settings, OutboxMessage, InboxEntry)


def create_app(settings: Settings | None = None) -> Flask:
    """The partners web application: partners, contracts and the partner portal."""
    rt = build(settings)
    app = create_service_app("partners", title="CRM Partners",
                             blueprints=[api.partners_blp, api.contracts_blp, api.portal_blp],
                             settings=rt.settings, readiness=runtime_readiness(rt),
                             extensions={"crm.runtime": rt})
    # Every portal request, after the kit's identity check: a suspended or terminated partner is refused.
    app.before_request_funcs.setdefault(api.portal_blp.name, []).append(check_portal_access)
    return app


def create_worker(settings: Settings | None = None, *, bindings: Bindings) -> Worker:
    """The partners worker: the outbox relay (partners consumes no events yet)."""
    return Worker(build(settings), handlers.HANDLERS, bindings)
