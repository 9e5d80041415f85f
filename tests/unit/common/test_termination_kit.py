"""The termination kit's pure parts: what makes two recommendations the same, the schedule slots, the policy set
handed to the plugin host, the subjects evidence events name, the run's running totals and the settings."""
from __future__ import annotations

import ast
import dataclasses
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from marshmallow import ValidationError

from services.common import termination as kit_package
from services.common.catalog import make_event
from services.common.identity import generate_keypair
from services.common.settings import SettingsError, from_env
from services.common.termination.adapter import SubjectAdapter, subject_ids_of
from services.common.termination.api import PolicyChangeSchema, PolicyCreateSchema
from services.common.termination.jobs import schedule_slot
from services.common.termination.policies import plugin_policies
from services.common.termination.recommendations import fingerprint
from services.common.termination.runs import BatchTiming, _add_counts, _add_timing


def finding(plugin="builtin.termination", code="fraud", strategy="terminate", **evidence):
    return {"plugin": plugin, "code": code, "strategy": strategy, "severity": "high", "reason": "r",
            "evidence": evidence}


def test_a_fingerprint_is_the_sorted_plugin_code_and_strategy_of_the_findings():
    one = [finding(), finding(code="late_payer", strategy="raise_price")]
    assert fingerprint(one) == fingerprint(list(reversed(one)))
    assert fingerprint([finding(flags=1)]) == fingerprint([finding(flags=7)])  # evidence does not count
    assert fingerprint([finding()]) != fingerprint([finding(strategy="raise_price")])
    assert fingerprint([finding()]) != fingerprint([finding(plugin="acme")])
    assert fingerprint([finding()]) != fingerprint(one)
    assert len(fingerprint(one)) == 64


def test_schedule_slots_are_whole_intervals_since_the_epoch():
    day = 86400.0
    assert schedule_slot(datetime(2026, 1, 1, 0, 0, tzinfo=timezone.utc), day) == 20454
    assert schedule_slot(datetime(2026, 1, 1, 23, 59, 59, tzinfo=timezone.utc), day) == 20454
    assert schedule_slot(datetime(2026, 1, 2, tzinfo=timezone.utc), day) == 20455


def test_the_plugin_host_gets_each_plugins_policies_in_order():
    snapshots = [{"plugin": "builtin.termination", "code": "fraud", "parameters": {"min_flags": 1}},
                 {"plugin": "acme", "code": "vip_churn", "parameters": {}},
                 {"plugin": "builtin.termination", "code": "late_payer", "parameters": {}}]
    grouped = plugin_policies(snapshots)
    assert [p.code for p in grouped["builtin.termination"]] == ["fraud", "late_payer"]
    assert grouped["builtin.termination"][0].parameters["min_flags"] == 1
    assert [p.code for p in grouped["acme"]] == ["vip_churn"]


def test_evidence_events_name_each_subject_once_and_other_events_none():
    first, second = uuid.uuid4(), uuid.uuid4()

    def event(contact_id, event_type="crm.contact.flagged"):
        return make_event(event_type, {"flag_id": uuid.uuid4(), "contact_id": contact_id, "code": "x",
                                       "occurred_at": datetime.now(timezone.utc)}, source="/services/contacts")

    adapter = SubjectAdapter(kind="customer", subject_ids=None, histories=None, terminate=None,
                             evidence_events={"crm.contact.flagged": lambda e: uuid.UUID(str(e.data["contact_id"]))})
    assert subject_ids_of(adapter, [event(second), event(first), event(second)]) == [second, first]
    other = SubjectAdapter(kind="customer", subject_ids=None, histories=None, terminate=None,
                           evidence_events={"crm.contact.flagged": lambda e: None})
    assert subject_ids_of(other, [event(first)]) == []


def test_the_kit_reads_every_part_of_the_subject_adapter():
    """A part no module of the kit reads (`exists` was one) is a burden on every service for nothing."""
    read = set()
    for module in Path(kit_package.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            owner = getattr(node, "value", None)
            if isinstance(node, ast.Attribute) and ((isinstance(owner, ast.Name) and owner.id == "adapter")
                                                    or (isinstance(owner, ast.Attribute) and owner.attr == "adapter")):
                read.add(node.attr)
    assert {field.name for field in dataclasses.fields(SubjectAdapter)} - read == set()


def test_a_run_adds_up_its_batches():
    timings = _add_timing({}, BatchTiming(500, 3, 0.5, 1.25, 0.25))
    timings = _add_timing(timings, BatchTiming(200, 1, 0.25, 0.5, 0.25))
    assert timings == {"read": 0.75, "evaluate": 1.75, "write": 0.5, "slowest_batch": 2.0}
    counts = _add_counts({"by_strategy": {"terminate": 1}}, {"recommended": 2, "suppressed": 0})
    counts = _add_counts(counts, {"recommended": 1, "withdrawn": 4})
    assert counts == {"by_strategy": {"terminate": 1},
                      "recommendations": {"recommended": 3, "suppressed": 0, "withdrawn": 4}}


def test_policy_bodies_need_a_slug_code_and_a_change_to_make():
    assert PolicyCreateSchema().load({"code": "vip_churn", "plugin": "acme"})["enabled"] is False
    for code in ("Fraud", "9lives", "a-b", "x" * 65, ""):
        with pytest.raises(ValidationError):
            PolicyCreateSchema().load({"code": code})
    with pytest.raises(ValidationError):
        PolicyChangeSchema().load({})
    assert PolicyChangeSchema().load({"description": None}) == {"description": None}


@pytest.mark.parametrize(("name", "value"), [("CRM_TERMINATION_WINDOW_DAYS", "0"),
                                             ("CRM_TERMINATION_EVALUATE_INTERVAL", "-1"),
                                             ("CRM_TERMINATION_DISMISSAL_DAYS", "soon"),
                                             ("CRM_TERMINATION_BATCH", "100000")])
def test_termination_settings_are_checked_at_start_up(name, value):
    env = {"CRM_IDENTITY_PUBLIC_KEY": generate_keypair()[1]}
    settings = from_env("contacts", env)
    assert (settings.termination_window_days, settings.termination_evaluate_interval,
            settings.termination_dismissal_days, settings.termination_batch) == (365, 86400.0, 90, 500)
    with pytest.raises(SettingsError) as raised:
        from_env("contacts", {**env, name: value})
    assert raised.value.variable == name
