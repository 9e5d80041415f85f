"""The built-in lead scorer (`builtin.lead_scoring`): each factor, its points and its explanation."""
from __future__ import annotations

import pytest
from crm_builtin import lead_scoring
from crm_plugins import LeadInput
from crm_plugins.testing import run_score_lead, sample_lead


def factor(decision, code_prefix: str):
    """The single factor of a decision whose code starts with `code_prefix`."""
    (found,) = [f for f in decision.factors if f.code.startswith(code_prefix)]
    return found


def test_a_perfect_lead_scores_100_with_four_explained_factors():
    decision = run_score_lead(lead_scoring, job_title="CEO", source="referral")

    assert decision.score == 100
    assert [f.code for f in decision.factors] == ["completeness", "company_domain", "seniority", "source_quality"]
    assert all(f.reason for f in decision.factors)
    assert not decision.degraded


def test_a_bare_purchased_free_mail_lead_scores_zero_not_below():
    decision = run_score_lead(lead_scoring, LeadInput(email="cold@gmail.com", source="purchased_list"))

    assert sum(f.points for f in decision.factors) < 0
    assert decision.score == 0


def test_completeness_gives_five_points_per_field_and_names_what_is_missing():
    found = lead_scoring.completeness(sample_lead(job_title=None, phone="  "))

    assert (found.code, found.points) == ("completeness", 15)
    assert "3 of 5" in found.reason
    assert "missing job title, phone" in found.reason


@pytest.mark.parametrize("email, code, points", [
    ("ada@engines.example", "company_domain", 20),
    ("ada@mail.acme-analytics.com", "company_domain", 20),
    ("ada@gmail.com", "free_mail_domain", 0),
    ("ada@yahoo.co.uk", "free_mail_domain", 0),
    ("ada@hotmail.de", "free_mail_domain", 0),
    ("ada@web.de", "free_mail_domain", 0),
    ("ada@GMX.net", "free_mail_domain", 0),
    ("ada@proton.me", "free_mail_domain", 0),
    ("ada@mail.ru", "free_mail_domain", 0),
    ("ada@mailinator.com", "disposable_domain", -20),
    ("ada@x.guerrillamail.net", "disposable_domain", -20),
    ("ada@web.com", "company_domain", 20),
    ("not-an-email", "no_email_domain", 0),
])
def test_the_email_domain_separates_companies_free_mail_and_disposable_addresses(email, code, points):
    found = lead_scoring.email_domain(LeadInput(email=email))

    assert (found.code, found.points) == (code, points)
    if "@" in email:
        assert email.rpartition("@")[2].lower() in found.reason


@pytest.mark.parametrize("title, points", [
    ("CTO", 30),
    ("ceo & co-founder", 30),
    ("Chief Marketing Officer", 30),
    ("Owner", 30),
    ("President", 30),
    ("VP of Sales", 25),
    ("Senior Vice President, Operations", 25),
    ("Head of IT", 20),
    ("Director", 20),
    ("Sales Director EMEA", 20),
    ("Manager", 12),
    ("Team Lead Support", 12),
    ("Software Engineer", 5),
    ("Product Owner", 5),
    ("Executive Assistant to the CEO", 5),
    ("Contractor", 5),
    ("Directory Editor", 5),
    ("Marketing Intern", 0),
    ("Working Student", 0),
])
def test_seniority_is_graded_by_whole_words_in_the_job_title(title, points):
    found = lead_scoring.seniority(sample_lead(job_title=title))

    assert (found.code, found.points) == ("seniority", points)
    assert title in found.reason


def test_a_missing_job_title_earns_no_seniority_and_says_so():
    found = lead_scoring.seniority(sample_lead(job_title=None))

    assert (found.points, found.reason) == (0, "no job title given")


@pytest.mark.parametrize("source, points", [
    ("referral", 25),
    ("demo_request", 20),
    ("web_form", 15),
    ("website", 15),
    ("event", 10),
    ("webinar", 10),
    ("trade-show", 10),
    ("partner", 8),
    ("cold_call", 0),
    ("purchased_list", -10),
])
def test_source_quality_ranks_referrals_highest_and_purchased_lists_lowest(source, points):
    found = lead_scoring.source_quality(sample_lead(source=source))

    assert (found.code, found.points) == ("source_quality", points)
    assert source in found.reason


@pytest.mark.parametrize("source", [None, "carrier-pigeon"])
def test_an_unknown_source_gets_a_small_default_and_is_called_unknown(source):
    found = lead_scoring.source_quality(sample_lead(source=source))

    assert found.points == lead_scoring.UNKNOWN_SOURCE_POINTS
    assert "unknown" in found.reason
