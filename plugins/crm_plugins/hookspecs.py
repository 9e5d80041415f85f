"""The hooks a CRM plugin may implement, with the markers that tie implementations to them.

Every hook name starts with ``crm_``. Each spec below is the reference for its hook: what the host passes in,
what it does with the return value, and what counts as a failure. The plugin guide (docs/plugins.md) has a
section and a runnable example per hook; a meta-test keeps the two in step.
"""
from __future__ import annotations

from collections.abc import Sequence

import pluggy

from .types import (
    CustomerHistory,
    CustomerInput,
    Finding,
    LeadInput,
    PartnerHistory,
    PartnerInput,
    PartnerTerminationHistory,
    PointAward,
    ProgramInput,
    PurchaseInput,
    RiskFactor,
    ScoreCriterion,
    ScoreFactor,
    ScorecardMetrics,
    ScorecardPeriod,
    TerminationPolicy,
    TerminationSubject,
)

PROJECT_NAME = "crm"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def crm_score_lead(lead: LeadInput) -> ScoreFactor | Sequence[ScoreFactor] | None:
    """Contribute score factors for one lead.

    Kind: *contribute* — the host calls every implementation, each on its own, and adds up what they return.

    Parameters:
        lead: a frozen :class:`~crm_plugins.types.LeadInput` with the lead's id (a UUID string, or ``None``
            for a lead that is not stored), trimmed e-mail (``lead.email_domain`` gives its lower-cased
            domain), optional name, company, job title, phone, ``source`` (a lower-case slug such as
            ``"referral"``) and ``campaign``. Never an ORM object; do not keep a reference to it.

    Returns:
        A :class:`~crm_plugins.types.ScoreFactor`, a list or tuple of them, or ``None`` when the plugin has
        nothing to say about this lead. Each factor carries a short ``code``, integer ``points`` (negative
        points lower the score) and a ``reason`` that names the evidence, shown to users as the explanation.

    The lead's score is the sum of every plugin's points, clamped to 0..100, and every factor is stored with
    the name of the plugin that gave it. If an implementation raises, or returns anything else (a dict, a
    float or boolean ``points``...), the host logs it with the plugin's name, drops that plugin's whole
    contribution and marks the decision as degraded; the other plugins still count and the request succeeds.
    The same happens to one that does not answer within the services' time budget (``CRM_PLUGIN_TIMEOUT_MS``).
    Implementations should be quick and side-effect free: the request that saves the lead waits for them.
    """


@hookspec
def crm_loyalty_points(purchase: PurchaseInput, program: ProgramInput) -> PointAward | Sequence[PointAward] | None:
    """Award loyalty points for one purchase.

    Kind: *contribute* — the host calls every implementation, each on its own, and adds up what they return.

    Parameters:
        purchase: a frozen :class:`~crm_plugins.types.PurchaseInput` with the purchase's id (a UUID string, or
            ``None`` outside the service), ``member_id`` and ``contact_id`` (UUID strings), ``amount`` (a
            :class:`decimal.Decimal`, always greater than 0, never a float), ``currency`` (a three-letter ISO
            4217 code, the program's currency), ``occurred_at`` (a timezone-aware UTC ``datetime``) and the
            caller's ``external_id`` (a receipt number, or ``None``).
        program: a frozen :class:`~crm_plugins.types.ProgramInput` with the program's id, ``code``, ``name``,
            ``points_per_unit`` (a ``Decimal``: points per whole unit of ``currency``) and ``currency``.

    Returns:
        A :class:`~crm_plugins.types.PointAward`, a list or tuple of them, or ``None`` when the plugin awards
        nothing for this purchase. Each award carries a short ``code``, integer ``points`` (negative points
        reduce what the purchase earns) and a ``reason`` naming the evidence, shown in the member's
        transaction list.

    The purchase earns the sum of every plugin's points, never less than 0, and each award is stored on the
    ledger entry with the name of the plugin that gave it. If an implementation raises, or returns anything
    else (a dict, float or boolean ``points``, more than 10**15 points...), the host logs it with the
    plugin's name, drops that plugin's whole contribution and marks the decision as degraded; the other
    plugins still count and the purchase is still recorded. The same happens to one that does not answer
    within the services' time budget (``CRM_PLUGIN_TIMEOUT_MS``). Implementations must be quick and
    side-effect free: the transaction that records the purchase waits for them.
    """


@hookspec(firstresult=True)
def crm_lifecycle_stage(customer: CustomerInput, stage: str) -> str | None:
    """Decide a customer's lifecycle stage instead of the rules.

    Kind: *decide* — the host asks the implementations in pluggy's order (the last registered first) and the
    first one that returns a stage decides; the others' answers are not used.

    Parameters:
        customer: a frozen :class:`~crm_plugins.types.CustomerInput` with the contact's id (a UUID string),
            ``purchase_count`` (purchases in every currency before ``as_of``), ``last_purchase_at`` (the last
            of them, a timezone-aware UTC ``datetime``, or ``None`` for a prospect) and ``as_of`` (the instant
            the refresh describes, timezone-aware UTC). ``customer.days_since_last_purchase`` gives whole days.
        stage: the stage the rules gave this customer, one of ``prospect``, ``new``, ``general``,
            ``repeater``, ``loyal``, ``lapsed`` (``crm_plugins.types.LIFECYCLE_STAGES``).

    Returns:
        One of those six stage names (a ``str``) to decide the customer's stage, or ``None`` to leave the
        decision to the next plugin and in the end to the rules. Returning the rules' own stage decides it
        too: the stage is then recorded as set by this plugin.

    The stage is stored on the customer's snapshot row with the name of the plugin that decided it (or
    ``"rules"``); a change of stage publishes ``crm.contact.stage_changed`` naming that source. If an
    implementation raises, returns anything else (another string, a number...) or does not answer within the
    services' time budget (``CRM_PLUGIN_TIMEOUT_MS``), the host logs it with the plugin's name and asks the
    next one, as if it had returned ``None``; the refresh still completes. The hook is called once per
    customer in every refresh (a million times for a million customers), outside any request: keep it fast
    and side-effect free.
    """


@hookspec
def crm_assess_partner_risk(partner: PartnerInput, history: PartnerHistory) -> RiskFactor | Sequence[RiskFactor] | None:
    """Contribute risk factors for one partner.

    Kind: *contribute* — the host calls every implementation, each on its own, and adds up what they return.

    Parameters:
        partner: a frozen :class:`~crm_plugins.types.PartnerInput` with the partner's id (a UUID string),
            ``name``, ``type`` (supplier, vendor, distributor, reseller), ``status`` (prospect, onboarding,
            active, suspended, terminated) and ``country`` (ISO 3166 alpha-2, or ``None``).
        history: a frozen :class:`~crm_plugins.types.PartnerHistory` as of one day (``history.as_of``, a
            ``date``): ``periods``, the deliveries owed in each of the last calendar months (oldest first;
            counts and ``Decimal`` quantities, with ``on_time_rate``, ``fill_rate`` and ``quality_rate`` from
            0 to 1, or ``None`` for an empty month); ``open_disputes``, the unresolved disputes by category
            and currency (count, ``Decimal`` amount, how many are escalated, the oldest's opening); ``spend``,
            per currency the amount this partner delivered over the last 12 months and the total of every
            partner (``share`` is its concentration); ``contracts``, each contract with its terms in force
            (``effective_to``, ``auto_renew``, ``notice_period_days``) and what an open proposal on it offers
            for ``effective_to`` / ``auto_renew``. Plain values only; no ORM object, no database access.

    Returns:
        A :class:`~crm_plugins.types.RiskFactor`, a list or tuple of them, or ``None`` when the plugin sees no
        risk. Each factor carries a short ``code``, an integer ``weight`` within ±100 (risk points; a negative
        weight lowers the risk) and a ``reason`` that names the evidence, shown to users as the explanation.

    The partner's risk score is the sum of every plugin's weights, clamped to 0..100, and its level is ``low``
    below 30, ``medium`` from 30 and ``high`` from 60; every factor is shown with the name of the plugin that
    gave it. If an implementation raises, or returns anything else (a dict, a float or boolean ``weight``, a
    weight beyond ±100...), the host logs it with the plugin's name, drops that plugin's whole contribution
    and marks the assessment as degraded; the other plugins still count and the request succeeds. The same
    happens to one that does not answer within the services' time budget (``CRM_PLUGIN_TIMEOUT_MS``).
    Implementations should be quick and side-effect free: the request that asks for the assessment waits.
    """


@hookspec
def crm_score_partner(partner: PartnerInput, period: ScorecardPeriod,
                      metrics: ScorecardMetrics) -> ScoreCriterion | Sequence[ScoreCriterion] | None:
    """Contribute criteria to a partner's scorecard for one period.

    Kind: *contribute* — the host calls every implementation, each on its own, and counts what they return.

    Parameters:
        partner: a frozen :class:`~crm_plugins.types.PartnerInput` with the partner's id (a UUID string),
            ``name``, ``type``, ``status`` and ``country`` (ISO 3166 alpha-2, or ``None``).
        period: a frozen :class:`~crm_plugins.types.ScorecardPeriod`: its ``label`` (``"2026-Q3"``,
            ``"2026-09"`` or ``"2026"``) and its first and last day (``start``, ``end``, both ``date``).
        metrics: a frozen :class:`~crm_plugins.types.ScorecardMetrics` with the built-in measures over the
            deliveries promised in the period: counts (``deliveries``, ``delivered``, ``on_time``,
            ``disputes``, ``priced``, ``within_price``), ``Decimal`` quantities (``quantity_ordered``,
            ``quantity_delivered``, ``quantity_rejected``) and the rates ``on_time_rate``, ``fill_rate``,
            ``quality_rate``, ``dispute_rate``, ``price_adherence`` (``Decimal`` 0..1, the dispute rate may
            exceed 1; ``None`` when there is nothing to measure).

    Returns:
        A :class:`~crm_plugins.types.ScoreCriterion`, a list or tuple of them, or ``None`` when the plugin has
        nothing to add. Each criterion carries a short ``code``, a ``score`` from 0 to 1 and a ``weight`` of 0
        to 1000 (both ``Decimal`` or ``int``, never float) and a ``reason`` naming the evidence.

    The scorecard's overall score is the weighted average of the built-in rates that have a value (with the
    weights of ``CRM_PARTNERS_SCORECARD_WEIGHTS``; the dispute rate counts as ``1 - rate``) and every plugin's
    criteria, each shown with the name of the plugin that gave it. If an implementation raises, or returns
    anything else (a dict, a float ``score``, a score above 1...), the host logs it with the plugin's name,
    drops that plugin's whole contribution and marks the scorecard as degraded; the other plugins still count
    and the request succeeds. The same happens to one that does not answer within the services' time budget
    (``CRM_PLUGIN_TIMEOUT_MS``). The hook is called once per period of a scorecard or trend: keep it quick
    and side-effect free.
    """


@hookspec
def crm_evaluate_termination(subject: TerminationSubject, history: CustomerHistory | PartnerTerminationHistory,
                             policies: tuple[TerminationPolicy, ...]) -> Finding | Sequence[Finding] | None:
    """Apply termination policies to one customer or partner.

    Kind: *contribute* — the host calls every implementation that has policies in the set, each on its own,
    and counts every finding they return.

    Parameters:
        subject: a frozen :class:`~crm_plugins.types.TerminationSubject`: ``kind`` (``"customer"`` or
            ``"partner"``), ``id`` (the contact's or partner's UUID string), ``name`` and ``status``.
        history: a plain frozen snapshot built by the service that owns the subject, over a window (``since``
            to ``as_of``, 365 days unless the simulation says otherwise): a
            :class:`~crm_plugins.types.CustomerHistory` for a customer (complaints, purchases with the
            ``spend`` per currency including discounts, coupons and returns, invoice ``payments``, uncleared
            ``fraud_flags``, the ``analytics`` snapshot row or ``None``), a
            :class:`~crm_plugins.types.PartnerTerminationHistory` for a partner (the ``scorecard`` measures over
            the deliveries promised in the window, ``disputes`` per category). Money and rates are ``Decimal``.
        policies: a tuple of :class:`~crm_plugins.types.TerminationPolicy`, only the policies of the set whose
            record names this plugin (``plugin``), each with its ``code`` and read-only ``parameters`` (plain
            JSON values). Never empty: a plugin without a policy in the set is not called.

    Returns:
        A :class:`~crm_plugins.types.Finding`, a list or tuple of them, or ``None`` when no policy found
        anything. Each finding carries the ``code`` of one of the given policies, a ``severity`` (``low``,
        ``medium``, ``high``), a recommended ``strategy`` (``retain``, ``re_specify``, ``unbundle``,
        ``raise_price``, ``terminate``), a short ``reason`` with the numbers, and ``evidence``: a mapping of
        names to str, int, bool, None or ``Decimal`` values (no floats), stored with the recommendation.

    The subject is flagged when any plugin returns a finding; its severity is the highest and its strategy the
    strongest among the findings of that severity. If an implementation raises, returns anything else (a dict,
    an unknown severity, a float in the evidence...) or a finding whose ``code`` is not one of the policies it
    was given, the host logs it with the plugin's name, drops that plugin's whole contribution and marks the
    evaluation as degraded; the other plugins still count. The same happens to one that does not answer within
    the services' time budget (``CRM_PLUGIN_TIMEOUT_MS``), and a policy naming a plugin that is not loaded is
    reported as ``plugin_unavailable``. The hook is called once per subject in every evaluation or
    simulation, up to hundreds of thousands of times, in the worker: keep it fast and side-effect free.
    """


# The hooks above, by name; the contract meta-test walks this list (and checks it matches the module).
HOOK_NAMES: tuple[str, ...] = ("crm_score_lead", "crm_loyalty_points", "crm_lifecycle_stage",
                                "crm_assess_partner_risk", "crm_score_partner", "crm_evaluate_termination")
