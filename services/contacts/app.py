"""Composition root of the contacts service: the web app and the worker."""
from __future__ import annotations

from flask import Flask

from services.common.broker import Bindings
from services.common.plugins import build_plugin_host
from services.common.runtime import Runtime, build_runtime
from services.common.settings import Settings, from_env
from services.common.web import create_service_app, runtime_readiness
from services.common.worker import Worker

from . import (
    accounts_api,
    api,
    attributes_api,
    consent_api,
    erasure,
    erasure_api,
    export_api,
    feedback_api,
    fraud_flags_api,
    handlers,
    imports_api,
    interactions_api,
    merges_api,
    payments_api,
    tags_api,
    termination,
    timeline_api,
)
from .analytics import refreshes_api as analytics_refreshes_api
from .analytics import reports_api as analytics_reports_api
from .analytics.jobs import AnalyticsJob
from .analytics.params import parameters_from_settings
from .import_jobs import ImportJob
from .models import InboxEntry, OutboxMessage
from .segments import api as segments_api

# The contacts API, one blueprint per part of the customer record.
BLUEPRINTS = (
    api.blp,
    accounts_api.blp,
    tags_api.blp,
    attributes_api.blp,
    consent_api.blp,
    feedback_api.blp,
    feedback_api.analytics_blp,
    analytics_reports_api.blp,
    analytics_refreshes_api.blp,
    interactions_api.blp,
    payments_api.blp,
    fraud_flags_api.blp,
    timeline_api.blp,
    merges_api.blp,
    erasure_api.blp,
    imports_api.blp,
    export_api.blp,
    segments_api.blp,
)


# Built-ins only the contacts service calls (the customers' termination policies), loaded after the shared ones.
CONTACT_PLUGINS = ("crm_builtin.termination",)


def build(settings: Settings | None = None) -> Runtime:
    """Engine, session factory, outbox/inbox models and the plugin host (crm_lifecycle_stage,
    crm_evaluate_termination) of one contacts process; CRM_ANALYTICS_PARAMETERS is checked here, so a malformed
    value stops the process at start-up."""
    settings = settings or from_env("contacts")
    parameters_from_settings(settings)
    plugins = build_plugin_host(plugins_dir=settings.plugins_dir, disabled=settings.plugins_disabled,
                                service_builtins=CONTACT_PLUGINS, timeout_ms=settings.plugin_timeout_ms)
    return build_runtime(settings, OutboxMessage, InboxEntry, plugins=plugins)


def create_app(settings: Settings | None = None) -> Flask:
    """The contacts web application."""
    runtime = build(settings)
    blueprints = [*BLUEPRINTS, termination.blueprint(runtime.settings)]
    return create_service_app("contacts", title="CRM Contacts", blueprints=blueprints, settings=runtime.settings,
                              readiness=runtime_readiness(runtime), extensions={"crm.runtime": runtime})


def create_worker(settings: Settings | None = None, *, bindings: Bindings) -> Worker:
    """The contacts worker: outbox relay, the consumer of the events handlers.HANDLERS takes, CSV imports and
    analytics refreshes (with their schedule)."""
    runtime = build(settings)
    # The erasure handlers learn from the bindings which services must confirm an erasure.
    # The termination evidence handlers learn how to evaluate (termination.py), the purchase facts' ones included.
    told = termination.with_evaluation(erasure.with_confirmers(handlers.HANDLERS, bindings), runtime)
    return Worker(runtime, told, bindings,
                  jobs={"imports": ImportJob(runtime).run, "analytics": AnalyticsJob(runtime).run,
                        "termination": termination.job(runtime).run})
