"""Policy records: create, read, change (If-Match) and list; what a run hands the plugins.

A built-in code (crm_builtin.termination's POLICIES) must be of the service's subject kind; its parameters are
checked and completed with the catalogue's defaults (422 `parameters.<name>`). Any other code names the loaded
plugin that implements crm_evaluate_termination (422 `plugin` otherwise) and keeps its parameters as given.
PATCH merges `parameters` into the stored ones (a null removes a name, so a built-in falls back to its
default); every change bumps `version`, and runs keep a snapshot of the policies they ran with.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence

from crm_builtin import termination as builtin
from crm_plugins.types import TerminationPolicy as PluginPolicy
from sqlalchemy import select

from services.common.db import utcnow
from services.common.etags import Precondition
from services.common.pagination import paginate
from services.common.problems import Conflict, NotFound, Unprocessable
from services.common.uow import UnitOfWork, insert_or_reread

from .adapter import TerminationKit

HOOK = "crm_evaluate_termination"
BUILTIN_PLUGIN = "builtin.termination"


def builtin_spec(code: str):
    """The built-in policy of this code, or None."""
    return builtin.POLICIES.get(code)


def termination_plugins(plugins) -> set[str]:
    """Names of the loaded plugins that implement crm_evaluate_termination."""
    if plugins is None:
        return set()
    return {item["name"] for item in plugins.list_plugins() if HOOK in item["hooks"]}


def _checked_parameters(code: str, given: Mapping) -> dict:
    filled, errors = builtin.check_parameters(code, given)
    if errors:
        raise Unprocessable(f"The parameters of the {code} policy are not valid: {', '.join(sorted(errors))}.",
                            errors={f"parameters.{name}": messages for name, messages in errors.items()})
    return filled


# Called with the session and the policy, before the commit, when a change alters what the enabled policies
# flag (the API asks for an evaluation in the same transaction: runs.add_evaluation).
OnEnabledChange = Callable[[object, object], None]


def create_policy(uow: UnitOfWork, kit: TerminationKit, plugins, data: Mapping,
                  on_enabled_change: OnEnabledChange | None = None):
    """A new policy record (disabled unless `enabled`); 422 naming the field at fault, 409 for a code in use."""
    Policy = kit.models.Policy
    code, plugin, parameters = data["code"], data.get("plugin"), dict(data.get("parameters") or {})
    spec = builtin_spec(code)
    if spec is not None:
        if spec.kind != kit.kind:
            raise Unprocessable(f"{code} is a built-in {spec.kind} policy; this list holds {kit.kind} policies.",
                                errors={"code": [f"A built-in {spec.kind} policy, not a {kit.kind} one."]})
        if plugin not in (None, BUILTIN_PLUGIN):
            raise Unprocessable(f"{code} is a built-in code: its plugin is {BUILTIN_PLUGIN}.",
                                errors={"plugin": [f"Built-in codes are implemented by {BUILTIN_PLUGIN}."]})
        plugin, parameters = BUILTIN_PLUGIN, _checked_parameters(code, parameters)
        name, description = data.get("name") or spec.name, data.get("description", spec.description)
    else:
        if not plugin:
            raise Unprocessable(f"{code} is not a built-in code: name the plugin that implements it.",
                                errors={"plugin": ["Required for a code that is not built in."]})
        if plugin not in termination_plugins(plugins):
            raise Unprocessable(f"No loaded plugin named {plugin!r} implements {HOOK}.",
                                errors={"plugin": [f"Not a loaded plugin implementing {HOOK}."]})
        name, description = data.get("name") or code, data.get("description")
    now = utcnow()
    policy = Policy(id=uuid.uuid4(), code=code, plugin=plugin, name=name, description=description,
                    enabled=bool(data.get("enabled", False)), parameters=parameters, version=1,
                    created_at=now, updated_at=now)
    with uow:
        taken = insert_or_reread(uow.session, policy,
                                 reread=lambda: uow.session.scalar(select(Policy).where(Policy.code == code)))
        if taken is not None:
            raise Conflict(f"A policy with the code {code} exists already ({taken.id}); change it instead.",
                           policy_id=str(taken.id))
        if policy.enabled and on_enabled_change:
            on_enabled_change(uow.session, policy)
        uow.commit()
        return policy


def get_policy(uow: UnitOfWork, kit: TerminationKit, policy_id: uuid.UUID):
    """One policy record (404 problem when there is none)."""
    Policy = kit.models.Policy
    with uow:
        policy = uow.session.scalar(select(Policy).where(Policy.id == policy_id))
    if policy is None:
        raise NotFound(f"No termination policy with id {policy_id}.")
    return policy


def update_policy(uow: UnitOfWork, kit: TerminationKit, policy_id: uuid.UUID, changes: Mapping,
                  precondition: Precondition, on_enabled_change: OnEnabledChange | None = None):
    """Change a policy's name, description, enabled or parameters (merged); If-Match is required (428/412)."""
    Policy = kit.models.Policy
    with uow:
        policy = uow.session.scalar(select(Policy).where(Policy.id == policy_id).with_for_update()
                                    .execution_options(populate_existing=True))
        if policy is None:
            raise NotFound(f"No termination policy with id {policy_id}.")
        precondition.check(policy.version, required=True, what="the policy")
        was_enabled, had_parameters = policy.enabled, dict(policy.parameters)
        if "parameters" in changes:
            merged = {**policy.parameters, **(changes["parameters"] or {})}
            merged = {name: value for name, value in merged.items() if value is not None}
            policy.parameters = (_checked_parameters(policy.code, merged)
                                 if policy.plugin == BUILTIN_PLUGIN and builtin_spec(policy.code) else merged)
        for name in ("name", "description", "enabled"):
            if name in changes and not (name == "name" and changes[name] is None):
                setattr(policy, name, changes[name])
        policy.version += 1
        policy.updated_at = utcnow()
        judges_differently = policy.enabled != was_enabled or (policy.enabled and policy.parameters != had_parameters)
        if judges_differently and on_enabled_change:
            on_enabled_change(uow.session, policy)
        uow.commit()
        return policy


def list_policies(uow: UnitOfWork, kit: TerminationKit, *, limit: int, cursor: str | None,
                  enabled: bool | None = None) -> dict:
    """Policy records, newest first, optionally only the enabled (or disabled) ones."""
    Policy = kit.models.Policy
    stmt = select(Policy)
    if enabled is not None:
        stmt = stmt.where(Policy.enabled.is_(enabled))
    with uow:
        return paginate(uow.session, stmt, Policy.seq, limit=limit, cursor=cursor)


def snapshot(policy) -> dict:
    """What a run keeps of a policy it runs: enough to say later exactly what was applied."""
    return {"id": str(policy.id), "code": policy.code, "plugin": policy.plugin, "name": policy.name,
            "version": policy.version, "enabled": policy.enabled, "parameters": dict(policy.parameters)}


def plugin_policies(snapshots: Sequence[Mapping]) -> dict[str, tuple[PluginPolicy, ...]]:
    """A run's policy snapshots as the plugin host takes them: plugin name -> its policies."""
    grouped: dict[str, list[PluginPolicy]] = {}
    for item in snapshots:
        grouped.setdefault(item["plugin"], []).append(PluginPolicy(code=item["code"], parameters=item["parameters"]))
    return {name: tuple(items) for name, items in grouped.items()}


def enabled_snapshots(session, kit: TerminationKit) -> list[dict]:
    """Snapshots of the service's enabled policies, oldest first."""
    Policy = kit.models.Policy
    return [snapshot(p) for p in session.scalars(select(Policy).where(Policy.enabled.is_(True)).order_by(Policy.seq))]
