"""Composition root of the partners service: the web app and the worker."""
from __future__ import annotations

from flask import Flask

from services.common.broker import Bindings
from services.common.plugins import build_plugin_host
from services.common.runtime import Runtime, build_runtime
from services.common.settings import Settings, from_env
from services.common.web import create_service_app, runtime_readiness
from services.common.worker import Worker

from . import api, handlers
from . import deliveries_api, scorecards  # noqa: F401 - deliveries_api defines the delivery and scorecard routes
from . import renewals_api  # noqa: F401 - defines the contract list and portal notice routes
from .renewals import RenewalJob
from . import disputes_api  # noqa: F401 - defines the dispute routes on api's blueprints
from .dispute_jobs import DisputeSlaJob
from . import proposals, proposals_api  # noqa: F401 - proposals_api defines the proposal routes
from . import risk_api  # noqa: F401 - defines GET /api/v1/partners/{id}/risk
from . import termination
from .portal_access import check_portal_access
from .models import InboxEntry, OutboxMessage

# Built-ins only the partners service calls, loaded after the shared ones and exactly like them.
PARTNER_PLUGINS = ("crm_builtin.partner_risk", "crm_builtin.termination")


def build(settings: Settings | None = None) -> Runtime:
    """Engine, session factory, outbox/inbox models and the plugin host of one partners process."""
    settings = settings or from_env("partners")
    plugins = build_plugin_host(plugins_dir=settings.plugins_dir, disabled=settings.plugins_disabled,
                                service_builtins=PARTNER_PLUGINS, timeout_ms=settings.plugin_timeout_ms)
    return build_runtime(settings, OutboxMessage, InboxEntry, plugins=plugins)


def create_app(settings: Settings | None = None) -> Flask:
    """The partners web application: partners, contracts and the partner portal."""
    rt = build(settings)
    scorecards.weights_from_settings(rt.settings)  # malformed scorecard weights stop start-up
    proposals.approval_limits_from_settings(rt.settings)  # malformed limits stop start-up
    app = create_service_app("partners", title="CRM Partners",
                             blueprints=[api.partners_blp, api.contracts_blp, api.portal_blp,
                                         termination.blueprint(rt.settings)],
                             settings=rt.settings, readiness=runtime_readiness(rt),
                             extensions={"crm.runtime": rt})
    # Every portal request, after the kit's identity check: a suspended or terminated partner is refused.
    app.before_request_funcs.setdefault(api.portal_blp.name, []).append(check_portal_access)
    return app


def create_worker(settings: Settings | None = None, *, bindings: Bindings) -> Worker:
    """The partners worker: the outbox relay, the consumer of its termination evidence events, and the dispute SLA,
    renewal, proposal expiry and termination jobs."""
    runtime = build(settings)
    return Worker(runtime, termination.with_evaluation(handlers.HANDLERS, runtime), bindings,
                  jobs={"dispute_sla": DisputeSlaJob(runtime).run, "renewals": RenewalJob(runtime).run,
                        "proposal_expiry": proposals.ProposalExpiryJob(runtime).run,
                        "termination": termination.job(runtime).run})
