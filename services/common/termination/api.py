"""HTTP entrypoints of termination policies, built for one service by `make_blueprint(kit)`.

Scopes: `termination:read` lists and reads everything, `termination:manage` writes policies and starts
simulations, `termination:decide` (and only it) accepts or dismisses a recommendation. docs/api-termination.md.
"""
from __future__ import annotations

from crm_plugins.types import FINDING_SEVERITIES, TERMINATION_STRATEGIES
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from services.common.etags import Precondition, etag
from services.common.idempotency import HEADER_PARAMETER, idempotent
from services.common.identity import current_principal, requires
from services.common.pagination import PageArgs
from services.common.schemas import DegradedSchema, Moment, TrimmedInput
from services.common.web import read_uow, runtime, uow

from . import DECIDE_SCOPE, MANAGE_SCOPE, READ_SCOPE, decisions, policies, recommendations, runs
from .runs import POLICY_TRIGGER
from .adapter import TerminationKit
from .models import (
    ACCEPT,
    CODE_MAX,
    DESCRIPTION_MAX,
    DISMISS,
    EVALUATION,
    MODES,
    NAME_MAX,
    PLUGIN_MAX,
    REASON_MAX,
    RECOMMENDATION_STATUSES,
    RUN_STATUSES,
)

CODE = validate.Regexp(rf"^[a-z][a-z0-9_]{{0,{CODE_MAX - 1}}}$",
                       error=f"Use 1-{CODE_MAX} lower-case letters, digits or '_', starting with a letter.")
_ETAG_HEADER = {"ETag": {"description": 'The policy\'s version as a weak tag, `W/"<version>"`; send it back in '
                                        "If-Match to change the policy.", "schema": {"type": "string"}}}
_IF_MATCH = {"name": "If-Match", "in": "header", "required": True, "schema": {"type": "string"},
             "description": 'The ETag of the policy, `W/"<version>"`: missing is 428, stale is 412.'}
_LOCATION = {"Location": {"description": "The simulation's URL.", "schema": {"type": "string"}}}


# -- schemas ---------------------------------------------------------------------------------------------------------

class PolicyCreateSchema(TrimmedInput):
    code = fields.String(required=True, validate=CODE, metadata={
        "description": "A built-in code of this subject kind (docs/termination.md lists them) or a plugin's own."})
    plugin = fields.String(validate=validate.Length(min=1, max=PLUGIN_MAX), metadata={
        "description": "The loaded plugin implementing the code; `builtin.termination` (the default) for a "
                       "built-in code, required for any other."})
    name = fields.String(validate=validate.Length(min=1, max=NAME_MAX),
                         metadata={"description": "Default: the built-in policy's name, else the code."})
    description = fields.String(allow_none=True, validate=validate.Length(max=DESCRIPTION_MAX))
    enabled = fields.Boolean(load_default=False, metadata={
        "description": "Whether scheduled and event-driven evaluations apply it (default false)."})
    parameters = fields.Dict(keys=fields.String(), load_default=dict, metadata={
        "description": "A built-in policy's parameters (checked, the defaults filled in; 422 names "
                       "`parameters.<name>`); any JSON object for a plugin's own code."})


class PolicyChangeSchema(TrimmedInput):
    name = fields.String(validate=validate.Length(min=1, max=NAME_MAX))
    description = fields.String(allow_none=True, validate=validate.Length(max=DESCRIPTION_MAX))
    enabled = fields.Boolean()
    parameters = fields.Dict(keys=fields.String(), metadata={
        "description": "Merged into the stored parameters: a name given replaces its value, `null` removes it (a "
                       "built-in policy then takes its default), a name left out keeps its value."})

    @validates_schema
    def _something(self, data, **_kw):
        if not data:
            raise ValidationError("Give at least one of name, description, enabled, parameters.", "_schema")


class PolicySchema(Schema):
    id = fields.UUID()
    code = fields.String()
    plugin = fields.String()
    name = fields.String()
    description = fields.String(allow_none=True)
    enabled = fields.Boolean()
    parameters = fields.Dict()
    version = fields.Integer(metadata={"description": "Counts changes; the ETag is `W/\"<version>\"`."})
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()


class PolicyQuerySchema(PageArgs):
    enabled = fields.Boolean()


class PolicyPageSchema(Schema):
    items = fields.List(fields.Nested(PolicySchema))
    next_cursor = fields.String(allow_none=True)


class SimulationCreateSchema(Schema):
    policy_ids = fields.List(fields.UUID(), validate=validate.Length(min=1, max=100), metadata={
        "description": "The policies to simulate; default every policy of this subject kind, enabled or not."})
    codes = fields.List(fields.String(validate=CODE), validate=validate.Length(min=1, max=100),
                        metadata={"description": "The policies by code instead of id."})
    window_days = fields.Integer(validate=validate.Range(min=1, max=runs.MAX_WINDOW_DAYS), metadata={
        "description": "Days of history the policies look at; default CRM_TERMINATION_WINDOW_DAYS (365)."})
    as_of = Moment(metadata={"description": "The instant the window ends; default now. Not in the future."})


class PolicySnapshotSchema(Schema):
    id = fields.String()
    code = fields.String()
    plugin = fields.String()
    name = fields.String()
    version = fields.Integer()
    enabled = fields.Boolean()
    parameters = fields.Dict()


class RunSchema(Schema):
    id = fields.UUID()
    mode = fields.String(metadata={"enum": list(MODES)})
    status = fields.String(metadata={"enum": list(RUN_STATUSES)})
    trigger = fields.String()
    requested_by = fields.String()
    policies = fields.List(fields.Nested(PolicySnapshotSchema),
                           metadata={"description": "The policy records as they were when the run was asked for."})
    window_days = fields.Integer()
    as_of = fields.AwareDateTime()
    subjects_seen = fields.Integer(metadata={"description": "Subjects judged so far."})
    subjects_flagged = fields.Integer()
    subjects_degraded = fields.Integer(metadata={"description": "Subjects judged while a plugin failed."})
    batches = fields.Integer()
    counts = fields.Dict(metadata={"description": "Once completed: flagged subjects `by_finding` code, "
                                                  "`by_strategy` and `by_severity`; an evaluation's also "
                                                  "`recommendations` (recommended, refreshed, superseded, "
                                                  "suppressed, withdrawn)."})
    timings = fields.Dict(metadata={"description": "Seconds spent reading, evaluating and writing; the slowest "
                                                   "batch."})
    error = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()
    started_at = fields.AwareDateTime(allow_none=True)
    finished_at = fields.AwareDateTime(allow_none=True)


class RunQuerySchema(PageArgs):
    status = fields.String(validate=validate.OneOf(RUN_STATUSES))


class RunPageSchema(Schema):
    items = fields.List(fields.Nested(RunSchema))
    next_cursor = fields.String(allow_none=True)


class FindingSchema(Schema):
    plugin = fields.String()
    code = fields.String()
    severity = fields.String(metadata={"enum": list(FINDING_SEVERITIES)})
    strategy = fields.String(metadata={"enum": list(TERMINATION_STRATEGIES)})
    reason = fields.String()
    evidence = fields.Dict(metadata={"description": "Names to values (decimals as strings)."})


class RunSubjectSchema(Schema):
    subject_id = fields.UUID()
    severity = fields.String(metadata={"enum": list(FINDING_SEVERITIES)})
    strategy = fields.String(metadata={"enum": list(TERMINATION_STRATEGIES)})
    findings = fields.List(fields.Nested(FindingSchema))
    degraded = fields.List(fields.Nested(DegradedSchema))


class RunSubjectQuerySchema(PageArgs):
    strategy = fields.String(validate=validate.OneOf(TERMINATION_STRATEGIES))
    severity = fields.String(validate=validate.OneOf(FINDING_SEVERITIES))
    finding = fields.String(validate=CODE, metadata={"description": "Only subjects with a finding of this code."})


class RunSubjectPageSchema(Schema):
    items = fields.List(fields.Nested(RunSubjectSchema))
    next_cursor = fields.String(allow_none=True)


class RecommendationSchema(Schema):
    id = fields.UUID()
    subject_id = fields.UUID()
    status = fields.String(metadata={"enum": list(RECOMMENDATION_STATUSES)})
    severity = fields.String(metadata={"enum": list(FINDING_SEVERITIES)})
    strategy = fields.String(metadata={"enum": list(TERMINATION_STRATEGIES)})
    findings = fields.List(fields.Nested(FindingSchema))
    run_id = fields.UUID(allow_none=True, metadata={"description": "The evaluation that made it; null when "
                                                                   "evidence events did."})
    superseded_by = fields.UUID(allow_none=True)
    created_at = fields.AwareDateTime()
    evidence_at = fields.AwareDateTime(metadata={"description": "When the findings were last refreshed."})
    closed_at = fields.AwareDateTime(allow_none=True)


class RecommendationQuerySchema(PageArgs):
    status = fields.String(validate=validate.OneOf(RECOMMENDATION_STATUSES))
    subject_id = fields.UUID()
    strategy = fields.String(validate=validate.OneOf(TERMINATION_STRATEGIES))


class RecommendationPageSchema(Schema):
    items = fields.List(fields.Nested(RecommendationSchema))
    next_cursor = fields.String(allow_none=True)


class DecisionCreateSchema(TrimmedInput):
    decision = fields.String(required=True, validate=validate.OneOf((ACCEPT, DISMISS)))
    reason = fields.String(required=True, validate=validate.Length(min=1, max=REASON_MAX))


class DecisionSchema(Schema):
    id = fields.UUID()
    recommendation_id = fields.UUID()
    subject_id = fields.UUID()
    decision = fields.String(metadata={"enum": [ACCEPT, DISMISS]})
    reason = fields.String()
    severity = fields.String()
    strategy = fields.String()
    findings = fields.List(fields.Nested(FindingSchema), metadata={"description": "As they were when decided."})
    effect = fields.String(metadata={"description": "`contact_terminated` / `partner_terminated` when accepting "
                                                    "`terminate` ended the relationship; `none` otherwise."})
    decided_by = fields.String(metadata={"description": "The API key that decided."})
    decided_at = fields.AwareDateTime()


class DecisionQuerySchema(PageArgs):
    subject_id = fields.UUID()


class DecisionPageSchema(Schema):
    items = fields.List(fields.Nested(DecisionSchema))
    next_cursor = fields.String(allow_none=True)


# -- routes ----------------------------------------------------------------------------------------------------------

def make_blueprint(kit: TerminationKit) -> Blueprint:
    """The termination routes of one service under `kit.url_prefix`."""
    kind = kit.kind
    blp = Blueprint("termination", __name__, url_prefix=kit.url_prefix,
                    description=f"Termination policies for {kind}s: policy records, simulations, recommendations "
                                f"and the operators' decisions.")
    prefix = kit.url_prefix

    def evaluate_after_change():
        requester = current_principal().key_id

        def add(session, _policy) -> None:
            runs.add_evaluation(session, kit, runtime().settings, trigger=POLICY_TRIGGER, requested_by=requester)
        return add

    def policy_headers(policy) -> dict:
        return {"ETag": etag(policy.version)}

    @blp.route("/policies")
    class Policies(MethodView):
        @requires(READ_SCOPE)
        @blp.arguments(PolicyQuerySchema, location="query")
        @blp.response(200, PolicyPageSchema)
        def get(self, args):
            """List the policies, newest first, optionally only `enabled` (or disabled) ones."""
            return policies.list_policies(read_uow(), kit, **args)

        @requires(MANAGE_SCOPE)
        @idempotent(kit.idempotency_model)
        @blp.arguments(PolicyCreateSchema)
        @blp.response(201, PolicySchema, headers=_ETAG_HEADER)
        @blp.alt_response(409, description="A policy with this code exists.")
        @blp.doc(parameters=[HEADER_PARAMETER])
        def post(self, data):
            """Create a policy (disabled unless `enabled`; an enabled one asks for an evaluation)."""
            created = policies.create_policy(uow(), kit, runtime().plugins, data, evaluate_after_change())
            return created, 201, {**policy_headers(created), "Location": f"{prefix}/policies/{created.id}"}

    @blp.route("/policies/<uuid:policy_id>")
    class PolicyById(MethodView):
        @requires(READ_SCOPE)
        @blp.response(200, PolicySchema, headers=_ETAG_HEADER)
        @blp.alt_response(404, description="No policy has this id.")
        def get(self, policy_id):
            """One policy; the ETag names its version."""
            policy = policies.get_policy(read_uow(), kit, policy_id)
            return policy, 200, policy_headers(policy)

        @requires(MANAGE_SCOPE)
        @blp.arguments(PolicyChangeSchema)
        @blp.response(200, PolicySchema, headers=_ETAG_HEADER)
        @blp.alt_response(404, description="No policy has this id.")
        @blp.alt_response(412, description="If-Match names a version that is no longer current.")
        @blp.alt_response(428, description="If-Match is missing.")
        @blp.doc(parameters=[_IF_MATCH])
        def patch(self, changes, policy_id):
            """Change a policy's name, description, enabled flag or parameters (merged); a new version.

            Enabling or disabling it, or changing an enabled policy's parameters, asks for an evaluation of the
            enabled policies in the same transaction (the worker runs it)."""
            policy = policies.update_policy(uow(), kit, policy_id, changes, Precondition.from_request(),
                                            evaluate_after_change())
            return policy, 200, policy_headers(policy)

    @blp.route("/simulations")
    class Simulations(MethodView):
        @requires(MANAGE_SCOPE)
        @idempotent(kit.idempotency_model)
        @blp.arguments(SimulationCreateSchema)
        @blp.response(202, RunSchema, headers=_LOCATION)
        @blp.doc(parameters=[HEADER_PARAMETER])
        def post(self, data):
            """Simulate policies over every subject in the worker, changing nothing (follow the Location)."""
            run = runs.request_simulation(uow(), kit, runtime().settings, requested_by=current_principal().key_id,
                                          **data)
            return run, 202, {"Location": f"{prefix}/simulations/{run.id}"}

        @requires(READ_SCOPE)
        @blp.arguments(RunQuerySchema, location="query")
        @blp.response(200, RunPageSchema)
        def get(self, args):
            """List the simulations, newest first, optionally of one `status`."""
            return runs.list_runs(read_uow(), kit, **args)

    @blp.route("/simulations/<uuid:run_id>")
    class SimulationById(MethodView):
        @requires(READ_SCOPE)
        @blp.response(200, RunSchema)
        @blp.alt_response(404, description="No simulation has this id.")
        def get(self, run_id):
            """One simulation: status, progress and, once completed, its counts."""
            return runs.get_run(read_uow(), kit, run_id)

    @blp.route("/simulations/<uuid:run_id>/subjects")
    class SimulationSubjects(MethodView):
        @requires(READ_SCOPE)
        @blp.arguments(RunSubjectQuerySchema, location="query")
        @blp.response(200, RunSubjectPageSchema)
        @blp.alt_response(404, description="No simulation has this id.")
        def get(self, args, run_id):
            """The subjects the simulation flagged with their findings and evidence, in cursor pages."""
            return runs.run_subjects(read_uow(), kit, run_id, **args)

    @blp.route("/evaluations")
    class Evaluations(MethodView):
        @requires(READ_SCOPE)
        @blp.arguments(RunQuerySchema, location="query")
        @blp.response(200, RunPageSchema)
        def get(self, args):
            """List the evaluations of the enabled policies (scheduled or asked for by a policy change), newest
            first, optionally of one `status`."""
            return runs.list_runs(read_uow(), kit, mode=EVALUATION, **args)

    @blp.route("/evaluations/<uuid:run_id>")
    class EvaluationById(MethodView):
        @requires(READ_SCOPE)
        @blp.response(200, RunSchema)
        @blp.alt_response(404, description="No evaluation has this id (a simulation's id included).")
        def get(self, run_id):
            """One evaluation: status, progress and, once completed, its counts (recommendations included)."""
            return runs.get_run(read_uow(), kit, run_id, mode=EVALUATION)

    @blp.route("/recommendations")
    class Recommendations(MethodView):
        @requires(READ_SCOPE)
        @blp.arguments(RecommendationQuerySchema, location="query")
        @blp.response(200, RecommendationPageSchema)
        def get(self, args):
            """List recommendations, newest first, by `status`, `subject_id` and `strategy`."""
            return recommendations.list_recommendations(read_uow(), kit, **args)

    @blp.route("/recommendations/<uuid:recommendation_id>")
    class RecommendationById(MethodView):
        @requires(READ_SCOPE)
        @blp.response(200, RecommendationSchema)
        @blp.alt_response(404, description="No recommendation has this id.")
        def get(self, recommendation_id):
            """One recommendation with its findings and evidence."""
            return recommendations.get_recommendation(read_uow(), kit, recommendation_id)

    @blp.route("/recommendations/<uuid:recommendation_id>/decision")
    class RecommendationDecision(MethodView):
        @requires(DECIDE_SCOPE)
        @idempotent(kit.idempotency_model)
        @blp.arguments(DecisionCreateSchema)
        @blp.response(201, DecisionSchema)
        @blp.alt_response(404, description="No recommendation has this id.")
        @blp.alt_response(409, description="The recommendation is not open (its status is named).")
        @blp.doc(parameters=[HEADER_PARAMETER])
        def post(self, data, recommendation_id):
            """Accept or dismiss an open recommendation, with a reason; accepting `terminate` ends the
            relationship."""
            return decisions.decide(uow(), kit, recommendation_id, decision=data["decision"], reason=data["reason"],
                                    decided_by=current_principal().key_id)

    @blp.route("/decisions")
    class Decisions(MethodView):
        @requires(READ_SCOPE)
        @blp.arguments(DecisionQuerySchema, location="query")
        @blp.response(200, DecisionPageSchema)
        def get(self, args):
            """List decisions, newest first, optionally about one `subject_id`."""
            return decisions.list_decisions(read_uow(), kit, **args)

    return blp
