"""Survey answers (NPS about the relationship, CSAT about one interaction or purchase) and their figures.

NPS (Net Promoter Score): the share of promoters (9-10) minus the share of detractors (0-6), in points from
-100 to 100. CSAT: the average of 1-5 ratings, each tied to the interaction or purchase it rates.
"""
from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import and_, func, literal, select

from services.common.db import new_id, utcnow
from services.common.pagination import paginate
from services.common.problems import Unprocessable
from services.common.uow import UnitOfWork

from .consent import MAX_CLOCK_SKEW
from .filters import contacts_statement
from .models import Contact, ContactPurchase, Feedback, Interaction
from .tags import normalize_tag
from .timeline import add_entries, entry
from .tombstones import missing_contact

NPS, CSAT = "nps", "csat"
KINDS = (NPS, CSAT)
SCORES = {NPS: range(11), CSAT: range(1, 6)}
PROMOTER_MIN = 9  # 9-10 promote
DETRACTOR_MAX = 6  # 0-6 detract; 7-8 are passive
NPS_PLACES = Decimal("0.1")
CSAT_PLACES = Decimal("0.01")
# What a CSAT answer may rate: the field naming it, and the table that says whose it is.
RATED = {"interaction_id": (Interaction.id, Interaction.contact_id),
         "purchase_id": (ContactPurchase.purchase_id, ContactPurchase.contact_id)}
_RATED_NAMES = {"interaction_id": "interaction", "purchase_id": "purchase"}
TIMELINE_SOURCE = "contacts"


# -- pure rules -------------------------------------------------------------------------------------------

def answer_problems(answer: Mapping, now: datetime) -> dict[str, list[str]]:
    """What is wrong with one answer beyond its shape: the score's range, what it rates, a time to come."""
    kind = answer["kind"]
    problems = {}
    scores = SCORES[kind]
    if answer["score"] not in scores:
        problems["score"] = [f"A {kind.upper()} score is a whole number from {scores.start} to {scores.stop - 1}."]
    named = [name for name in RATED if answer.get(name) is not None]
    if kind == CSAT and len(named) != 1:
        message = "A CSAT answer rates exactly one interaction or purchase: send interaction_id or purchase_id."
        problems.update({name: [message] for name in (named or RATED)})
    elif kind == NPS and named:
        problems.update({name: ["Only a CSAT answer rates an interaction or a purchase."] for name in named})
    if answer["occurred_at"] > now + MAX_CLOCK_SKEW:
        problems["occurred_at"] = ["Lies in the future; send when the person answered."]
    return problems


def nps_score(promoters: int, detractors: int, responses: int) -> Decimal | None:
    """% promoters − % detractors, rounded half away from zero to one decimal place; None without answers."""
    if not responses:
        return None
    return (Decimal(100 * (promoters - detractors)) / responses).quantize(NPS_PLACES, ROUND_HALF_UP)


def csat_average(total: int, responses: int) -> Decimal | None:
    """The mean rating, rounded half away from zero to two decimal places; None without answers."""
    if not responses:
        return None
    return (Decimal(total) / responses).quantize(CSAT_PLACES, ROUND_HALF_UP)


def window(start: date | datetime | None, end: date | datetime | None) -> tuple[datetime | None, datetime | None]:
    """The answers' time range as [from, until): a date is a whole UTC day, a time an instant; both ends count.

    422 naming `from` when it lies after `to`.
    """
    def first_instant(value):
        return value if isinstance(value, datetime) else datetime.combine(value, time.min, timezone.utc)

    lower = None if start is None else first_instant(start)
    # Times are kept to the microsecond, so "up to and including `to`" is "before `to` + 1 µs".
    until = None if end is None else (end + timedelta(microseconds=1) if isinstance(end, datetime)
                                      else first_instant(end) + timedelta(days=1))
    if lower is not None and until is not None and lower >= until:
        raise Unprocessable("The window ends before it starts.", errors={"from": ["Must not be after `to`."]})
    return lower, until


# -- use cases --------------------------------------------------------------------------------------------

def _summary(answer: Mapping) -> str:
    rated = next((_RATED_NAMES[name] for name in RATED if answer.get(name)), None)
    about = f" for a {rated}" if rated else ""
    survey = f" ({answer['survey']})" if answer.get("survey") else ""
    return f"{answer['kind'].upper()} {answer['score']}{about}{survey}"


def record_feedback(uow: UnitOfWork, contact_id: uuid.UUID, answer: Mapping, *, recorded_by: str) -> Feedback:
    """Record one survey answer of a contact; a CSAT answer must rate an interaction or purchase of theirs."""
    now = utcnow()
    answer = {**answer, "occurred_at": (answer.get("occurred_at") or now).astimezone(timezone.utc)}
    problems = answer_problems(answer, now)
    if problems:
        raise Unprocessable("The survey answer is not valid.", errors=problems)
    rated = next((name for name in RATED if answer.get(name) is not None), None)
    with uow:
        session = uow.session
        # One round trip: the contact, and whose the rated interaction or purchase is (NULL when unknown).
        owner = literal(None)
        if rated:
            key, owner_column = RATED[rated]
            owner = select(owner_column).where(key == answer[rated]).scalar_subquery()
        found = session.execute(select(Contact.seq, owner.label("owner")).where(Contact.id == contact_id)).first()
        if found is None:
            raise missing_contact(session, contact_id)
        if rated and found.owner != contact_id:
            # Unknown and someone else's read alike: the answer must not reveal another person's records.
            raise Unprocessable(f"The {_RATED_NAMES[rated]} is not one of this contact's.",
                                errors={rated: [f"No {_RATED_NAMES[rated]} of this contact has this id."]})
        feedback = Feedback(id=new_id(), contact_id=contact_id, kind=answer["kind"], score=answer["score"],
                            comment=answer.get("comment"), interaction_id=answer.get("interaction_id"),
                            purchase_id=answer.get("purchase_id"), occurred_at=answer["occurred_at"],
                            survey=answer.get("survey"), channel=answer.get("channel"), recorded_by=recorded_by,
                            recorded_at=now)
        session.add(feedback)
        # The comment stays out of the event and the timeline: free text about a person goes only where asked.
        uow.add_event("crm.feedback.received",
                      {"feedback_id": feedback.id, "contact_id": contact_id, "kind": feedback.kind,
                       "score": feedback.score, "occurred_at": feedback.occurred_at,
                       "interaction_id": feedback.interaction_id, "purchase_id": feedback.purchase_id},
                      subject=contact_id)
        add_entries(session, [entry(
            id=feedback.id, kind="feedback", occurred_at=feedback.occurred_at, source=TIMELINE_SOURCE,
            contact_id=contact_id, summary=_summary(answer),
            data={"kind": feedback.kind, "score": feedback.score, "survey": feedback.survey,
                  "channel": feedback.channel,
                  **{name: str(answer[name]) for name in RATED if answer.get(name) is not None}})])
        uow.commit()
        return feedback


# What the answers may be sorted by (`sort=`); without one, the most recently recorded first.
SORTS = {"occurred_at": Feedback.occurred_at, "recorded_at": Feedback.recorded_at, "score": Feedback.score}


def list_feedback(uow: UnitOfWork, contact_id: uuid.UUID, *, limit: int, cursor: str | None,
                  kind: str | None = None, sort: str | None = None) -> dict:
    """A contact's survey answers (by default the most recently recorded first), optionally of one kind."""
    stmt = select(Feedback).where(Feedback.contact_id == contact_id)
    if kind:
        stmt = stmt.where(Feedback.kind == kind)
    with uow:
        page = paginate(uow.session, stmt, Feedback.seq, limit=limit, cursor=cursor, sort=sort, columns=SORTS)
        # Only an empty page needs to tell "no such contact" from "no answers (yet)".
        if not page["items"] and uow.session.scalar(select(Contact.seq).where(Contact.id == contact_id)) is None:
            raise missing_contact(uow.session, contact_id)
        return page


_IS_NPS, _IS_CSAT = Feedback.kind == NPS, Feedback.kind == CSAT
# Every figure in one pass over the window: a FILTER clause per class (PostgreSQL, and SQLite from 3.30).
_FIGURES = (
    func.count().filter(_IS_NPS).label("nps_responses"),
    func.count().filter(and_(_IS_NPS, Feedback.score >= PROMOTER_MIN)).label("promoters"),
    func.count().filter(and_(_IS_NPS, Feedback.score > DETRACTOR_MAX, Feedback.score < PROMOTER_MIN)).label("passives"),
    func.count().filter(and_(_IS_NPS, Feedback.score <= DETRACTOR_MAX)).label("detractors"),
    func.count().filter(_IS_CSAT).label("csat_responses"),
    func.coalesce(func.sum(Feedback.score).filter(_IS_CSAT), 0).label("csat_total"),
    *(func.count().filter(and_(_IS_CSAT, Feedback.score == score)).label(f"csat_{score}") for score in SCORES[CSAT]),
)


def feedback_figures(uow: UnitOfWork, *, start: date | datetime | None = None, end: date | datetime | None = None,
                     segment: str | None = None, account_id: uuid.UUID | None = None) -> dict:
    """NPS and CSAT over the answers given in a window, for everyone or for the contacts of a segment or account.

    Until saved segments exist, `segment` names a tag: `vip` is the contacts tagged `vip`.
    """
    lower, until = window(start, end)
    if segment is not None:
        try:
            segment = normalize_tag(segment)
        except ValueError as exc:
            raise Unprocessable(str(exc), errors={"segment": [str(exc)]}) from None
    stmt = select(*_FIGURES)
    if lower is not None:
        stmt = stmt.where(Feedback.occurred_at >= lower)
    if until is not None:
        stmt = stmt.where(Feedback.occurred_at < until)
    if segment is not None or account_id is not None:
        people = contacts_statement(tag=[segment] if segment else None, account_id=account_id)
        stmt = stmt.where(Feedback.contact_id.in_(people.with_only_columns(Contact.id)))
    with uow:
        row = uow.session.execute(stmt).one()
    return {
        "start": start, "end": end, "segment": segment, "account_id": account_id,
        "nps": {"score": nps_score(row.promoters, row.detractors, row.nps_responses), "responses": row.nps_responses,
                "promoters": row.promoters, "passives": row.passives, "detractors": row.detractors},
        "csat": {"average": csat_average(row.csat_total, row.csat_responses), "responses": row.csat_responses,
                 "distribution": {str(score): row._mapping[f"csat_{score}"] for score in SCORES[CSAT]}},
    }
