"""Where the loyalty service asks the plugins: points for a purchase through the `crm_loyalty_points` hook."""
from __future__ import annotations

from crm_plugins import PointsDecision, ProgramInput, PurchaseInput

from .models import Member, Program, Purchase


def purchase_input(purchase: Purchase, member: Member) -> PurchaseInput:
    """The plain, frozen view of a purchase that plugins receive (never the ORM object)."""
    return PurchaseInput(
        id=str(purchase.id) if purchase.id else None, member_id=str(member.id), contact_id=str(member.contact_id),
        amount=purchase.amount, currency=purchase.currency, occurred_at=purchase.occurred_at,
        external_id=purchase.external_id,
    )


def program_input(program: Program) -> ProgramInput:
    """The plain, frozen view of a program that plugins receive."""
    return ProgramInput(id=str(program.id), code=program.code, name=program.name,
                        points_per_unit=program.points_per_unit, currency=program.currency)


def award_points(plugins, purchase: Purchase, member: Member, program: Program) -> PointsDecision:
    """Ask every loaded plugin what the purchase earns; a failing plugin is reported, not raised."""
    return plugins.loyalty_points(purchase_input(purchase, member), program_input(program))


def factor_rows(decision: PointsDecision) -> tuple[list[dict], list[dict]]:
    """The decision's factors and failures as JSON-ready rows for the ledger entry."""
    factors = [{"plugin": f.plugin, "code": f.code, "points": f.points, "reason": f.reason} for f in decision.factors]
    # Name and code only (to_dict leaves out the exception's text, which went to the log).
    degraded = [d.to_dict() for d in decision.degraded]
    return factors, degraded
