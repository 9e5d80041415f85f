"""Composition root of the leads service: the web app and the worker."""
from __future__ import annotations

from flask import Flask

from services.common.plugins import build_plugin_host
from services.common.broker import Bindings
from services.common.runtime import Runtime, build_runtime
from services.common.settings import Settings, from_env
from services.common.web import create_service_app, runtime_readiness
from services.common.worker import Worker

from . import api, handlers
from .models import InboxEntry, OutboxMessage


def build(settings: Settings | None = None) -> Runtime:
    """Engine, session factory, outbox/inbox models and the plugin host of one leads process."""
    settings = settings or from_env("leads")
    plugins = build_plugin_host(plugins_dir=settings.plugins_dir, disabled=settings.plugins_disabled,
                                timeout_ms=settings.plugin_timeout_ms)
    return build_runtime(settings, OutboxMessage, InboxEntry, plugins=plugins)


def create_app(settings: Settings | None = None) -> Flask:
    """The leads web application."""
    rt = build(settings)
    return create_service_app("leads", title="CRM Leads", blueprints=[api.blp, api.plugins_blp],
                              settings=rt.settings, readiness=runtime_readiness(rt),
                              extensions={"crm.runtime": rt})


def create_worker(settings: Settings | None = None, *, bindings: Bindings) -> Worker:
    """The leads worker: outbox relay plus the crm.contact.created consumer."""
    return Worker(build(settings), handlers.HANDLERS, bindings)
