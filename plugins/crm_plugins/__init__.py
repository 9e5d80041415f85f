"""The CRM plugin API: hook markers, hook specifications and the values plugins receive and return.

    from crm_plugins import hookimpl, LeadInput, ScoreFactor

    @hookimpl
    def crm_score_lead(lead: LeadInput):
        return ScoreFactor("example", 5, "an example factor")
"""
from __future__ import annotations

from .hookspecs import HOOK_NAMES, PROJECT_NAME, hookimpl, hookspec
from .types import (
    AppliedFactor,
    CustomerInput,
    LeadInput,
    PluginFailure,
    PointAward,
    PointsDecision,
    ProgramInput,
    PurchaseInput,
    ScoreDecision,
    ScoreFactor,
    StageDecision,
)

__all__ = [
    "HOOK_NAMES",
    "PROJECT_NAME",
    "AppliedFactor",
    "CustomerInput",
    "LeadInput",
    "PluginFailure",
    "PointAward",
    "PointsDecision",
    "ProgramInput",
    "PurchaseInput",
    "ScoreDecision",
    "ScoreFactor",
    "StageDecision",
    "hookimpl",
    "hookspec",
]
