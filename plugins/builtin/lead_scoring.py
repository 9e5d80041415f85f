"""Built-in lead scoring: completeness, e-mail domain, seniority and source, each an explained factor.

Registered as `builtin.lead_scoring`, exactly like a third-party plugin; disable it with
CRM_PLUGINS_DISABLED=builtin.lead_scoring to score with your own plugins only.
The weights add up to 100 for a perfect lead: 25 completeness + 20 domain + 30 seniority + 25 source.
"""
from __future__ import annotations

import re

from crm_plugins import LeadInput, ScoreFactor, hookimpl
from crm_plugins.mail_domains import is_disposable_mail, is_free_mail

# --- completeness -------------------------------------------------------------------------------------------

COMPLETENESS_FIELDS = {
    "first_name": "first name", "last_name": "last name", "company": "company", "job_title": "job title",
    "phone": "phone",
}
POINTS_PER_FIELD = 5


def completeness(lead: LeadInput) -> ScoreFactor:
    """5 points per contact field present (first name, last name, company, job title, phone)."""
    present = [label for attr, label in COMPLETENESS_FIELDS.items() if (getattr(lead, attr) or "").strip()]
    missing = [label for label in COMPLETENESS_FIELDS.values() if label not in present]
    reason = f"{len(present)} of {len(COMPLETENESS_FIELDS)} contact fields given"
    if present:
        reason += f" ({', '.join(present)})"
    if missing:
        reason += f"; missing {', '.join(missing)}"
    return ScoreFactor("completeness", POINTS_PER_FIELD * len(present), reason)


# --- e-mail domain ------------------------------------------------------------------------------------------

COMPANY_DOMAIN_POINTS = 20
FREE_MAIL_POINTS = 0
DISPOSABLE_POINTS = -20


def email_domain(lead: LeadInput) -> ScoreFactor:
    """A company domain earns points, free mail earns none, a disposable address loses points."""
    domain = lead.email_domain
    if not domain:
        return ScoreFactor("no_email_domain", 0, f"e-mail {lead.email!r} has no domain to judge")
    if is_disposable_mail(domain):
        return ScoreFactor("disposable_domain", DISPOSABLE_POINTS,
                           f"{domain} is a disposable (throw-away) mail service")
    if is_free_mail(domain):
        return ScoreFactor("free_mail_domain", FREE_MAIL_POINTS,
                           f"{domain} is a free mail provider, so it says nothing about an employer")
    return ScoreFactor("company_domain", COMPANY_DOMAIN_POINTS, f"{domain} looks like a company domain")


# --- seniority ----------------------------------------------------------------------------------------------

def _words(*phrases: str) -> re.Pattern:
    # Word boundaries so that "cto" matches "CTO" and "CTO/Founder" but not "director" or "contractor".
    return re.compile(r"\b(?:" + "|".join(phrases) + r")\b", re.IGNORECASE)


# First match wins: junior titles before everything ("Intern to the CEO"), then the most senior level.
SENIORITY_LEVELS: list[tuple[str, int, re.Pattern]] = [
    ("a trainee or student", 0, _words(r"interns?", r"internship", r"students?", r"trainee", r"apprentice",
                                       r"werkstudent(?:in)?", r"praktikant(?:in)?", r"volunteer")),
    ("an assistant", 5, _words(r"(?:executive|personal) assistant", r"assistant to")),
    ("C-level, founder or owner", 30, _words(
        r"c[a-z]o", r"chief", r"(?<!vice )(?<!vice-)president", r"co-?founder", r"founder",
        r"(?<!product )(?<!process )owner", r"proprietor", r"managing director", r"managing partner",
        r"geschäftsführer(?:in)?", r"inhaber(?:in)?", r"vorstand")),
    ("vice-president level", 25, _words(r"vp", r"svp", r"evp", r"avp", r"vice[- ]president")),
    ("director or head of a function", 20, _words(r"director", r"head", r"direktor(?:in)?", r"general manager")),
    ("manager or team lead", 12, _words(r"manager", r"team lead(?:er)?", r"supervisor", r"leiter(?:in)?")),
]
OTHER_TITLE_POINTS = 5


def seniority(lead: LeadInput) -> ScoreFactor:
    """Graded points by the highest seniority the job title names (C-level 30 ... manager 12, other 5)."""
    title = (lead.job_title or "").strip()
    if not title:
        return ScoreFactor("seniority", 0, "no job title given")
    for label, points, pattern in SENIORITY_LEVELS:
        match = pattern.search(title)
        if match:
            reason = f"job title {title!r} reads as {label} (matched {match.group(0)!r})"
            return ScoreFactor("seniority", points, reason)
    return ScoreFactor("seniority", OTHER_TITLE_POINTS, f"job title {title!r} names no seniority level")


# --- source -------------------------------------------------------------------------------------------------

SOURCE_POINTS = {
    "referral": 25,
    "demo_request": 20,
    "web_form": 15,
    "event": 10,
    "webinar": 10,
    "partner": 8,
    "paid_ads": 5,
    "social": 5,
    "cold": 0,
    "purchased_list": -10,
}
SOURCE_ALIASES = {
    "referred": "referral", "recommendation": "referral",
    "demo": "demo_request", "trial": "demo_request", "trial_signup": "demo_request",
    "website": "web_form", "web": "web_form", "form": "web_form", "contact_form": "web_form", "inbound": "web_form",
    "trade_show": "event", "tradeshow": "event", "conference": "event", "fair": "event", "meetup": "event",
    "partner_referral": "partner", "reseller": "partner",
    "ads": "paid_ads", "ppc": "paid_ads", "paid_search": "paid_ads", "adwords": "paid_ads",
    "social_media": "social", "linkedin": "social",
    "cold_call": "cold", "cold_email": "cold", "cold_outreach": "cold", "outbound": "cold",
    "purchased": "purchased_list", "bought_list": "purchased_list", "list_purchase": "purchased_list",
}
UNKNOWN_SOURCE_POINTS = 3


def source_quality(lead: LeadInput) -> ScoreFactor:
    """Points by how the lead reached us: referral best, a purchased list worst; unknown sources a little."""
    raw = (lead.source or "").strip().lower()
    if not raw:
        return ScoreFactor("source_quality", UNKNOWN_SOURCE_POINTS, "source unknown: none recorded")
    key = re.sub(r"[\s\-]+", "_", raw)
    key = SOURCE_ALIASES.get(key, key)
    if key not in SOURCE_POINTS:
        return ScoreFactor("source_quality", UNKNOWN_SOURCE_POINTS, f"source {raw!r} is unknown to the built-in scorer")
    points = SOURCE_POINTS[key]
    quality = "high" if points >= 20 else "good" if points >= 10 else "fair" if points > 0 else "low"
    named = raw if key == raw else f"{raw} ({key})"
    return ScoreFactor("source_quality", points, f"source {named} is of {quality} quality")


@hookimpl
def crm_score_lead(lead: LeadInput) -> list[ScoreFactor]:
    """Every built-in factor for the lead."""
    return [completeness(lead), email_domain(lead), seniority(lead), source_quality(lead)]
