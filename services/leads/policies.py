"""Where the leads service asks the plugins: lead scoring through the `crm_score_lead` hook."""
from __future__ import annotations

from crm_plugins import LeadInput

from .models import Lead


def lead_input(lead: Lead) -> LeadInput:
    """The plain, frozen view of a lead that plugins receive (never the ORM object)."""
    return LeadInput(
        id=str(lead.id) if lead.id else None, email=lead.email, first_name=lead.first_name,
        last_name=lead.last_name, company=lead.company, job_title=lead.job_title, phone=lead.phone,
        source=lead.source, campaign=lead.campaign,
    )


def apply_score(plugins, lead: Lead) -> None:
    """Score the lead with every loaded plugin and store the score with its factors and failures."""
    decision = plugins.score_lead(lead_input(lead))
    lead.score = decision.score
    lead.score_factors = [
        {"plugin": f.plugin, "code": f.code, "points": f.points, "reason": f.reason} for f in decision.factors
    ]
    # Name and code only (to_dict leaves out the exception's text, which went to the log).
    lead.score_degraded = [d.to_dict() for d in decision.degraded]
