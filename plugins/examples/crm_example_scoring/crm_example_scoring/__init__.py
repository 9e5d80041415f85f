"""An example third-party CRM plugin, written as a class: a bonus for leads from technology companies."""
from __future__ import annotations

import re

from crm_plugins import LeadInput, ScoreFactor, hookimpl

__version__ = "0.1.0"


class TechCompanyScoring:
    """Adds a `tech_company` factor when the e-mail domain or the company name suggests a software business."""

    TECH_TLDS = ("io", "ai", "dev", "tech", "app", "cloud")
    COMPANY_KEYWORDS = re.compile(r"\b(?:crm|saas|software|analytics|cloud|data|labs?)\b", re.IGNORECASE)

    def __init__(self, points: int = 10) -> None:
        self.points = points

    @hookimpl
    def crm_score_lead(self, lead: LeadInput) -> ScoreFactor | None:
        """A bonus for a tech top-level domain or a tech keyword in the company name; None otherwise."""
        tld = lead.email_domain.rpartition(".")[2]
        if tld in self.TECH_TLDS:
            return ScoreFactor("tech_company", self.points, f"e-mail domain {lead.email_domain} uses the .{tld} TLD")
        match = self.COMPANY_KEYWORDS.search(lead.company or "")
        if match:
            return ScoreFactor("tech_company", self.points,
                               f"company {lead.company!r} mentions {match.group(0)!r}")
        return None


# The entry point `crm_example_scoring:plugin` names this instance.
plugin = TechCompanyScoring()
