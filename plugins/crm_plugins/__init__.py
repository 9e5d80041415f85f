"""The CRM plugin API: hook markers, hook specifications and the values plugins receive and return.

    from crm_plugins import hookimpl, LeadInput, ScoreFactor

    @hookimpl
    def crm_score_lead(lead: LeadInput):
        return ScoreFactor("example", 5, "an example factor")
"""
from __future__ import annotations

from .hookspecs import HOOK_NAMES, PROJECT_NAME, hookimpl, hookspec
from .types import (
    AppliedCriterion,
    AppliedFactor,
    AppliedRiskFactor,
    ContractSnapshot,
    CustomerInput,
    DeliveryPeriod,
    LeadInput,
    OpenDisputes,
    PartnerHistory,
    PartnerInput,
    PartnerScoreDecision,
    PluginFailure,
    PointAward,
    PointsDecision,
    ProgramInput,
    PurchaseInput,
    RiskAssessment,
    RiskFactor,
    ScoreCriterion,
    ScorecardMetrics,
    ScorecardPeriod,
    ScoreDecision,
    ScoreFactor,
    SpendShare,
    StageDecision,
)

__all__ = [
    "HOOK_NAMES",
    "PROJECT_NAME",
    "AppliedCriterion",
    "AppliedFactor",
    "AppliedRiskFactor",
    "ContractSnapshot",
    "CustomerInput",
    "DeliveryPeriod",
    "LeadInput",
    "OpenDisputes",
    "PartnerHistory",
    "PartnerInput",
    "PartnerScoreDecision",
    "PluginFailure",
    "PointAward",
    "PointsDecision",
    "ProgramInput",
    "PurchaseInput",
    "RiskAssessment",
    "RiskFactor",
    "ScoreCriterion",
    "ScorecardMetrics",
    "ScorecardPeriod",
    "ScoreDecision",
    "ScoreFactor",
    "SpendShare",
    "StageDecision",
    "hookimpl",
    "hookspec",
]
