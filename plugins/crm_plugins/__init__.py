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
    AppliedRiskFactor,
    ContractSnapshot,
    CustomerInput,
    DeliveryPeriod,
    LeadInput,
    OpenDisputes,
    PartnerHistory,
    PartnerInput,
    PluginFailure,
    PointAward,
    PointsDecision,
    ProgramInput,
    PurchaseInput,
    RiskAssessment,
    RiskFactor,
    ScoreDecision,
    ScoreFactor,
    SpendShare,
    StageDecision,
)

__all__ = [
    "HOOK_NAMES",
    "PROJECT_NAME",
    "AppliedFactor",
    "AppliedRiskFactor",
    "ContractSnapshot",
    "CustomerInput",
    "DeliveryPeriod",
    "LeadInput",
    "OpenDisputes",
    "PartnerHistory",
    "PartnerInput",
    "PluginFailure",
    "PointAward",
    "PointsDecision",
    "ProgramInput",
    "PurchaseInput",
    "RiskAssessment",
    "RiskFactor",
    "ScoreDecision",
    "ScoreFactor",
    "SpendShare",
    "StageDecision",
    "hookimpl",
    "hookspec",
]
