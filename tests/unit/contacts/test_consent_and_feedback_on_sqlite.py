"""Consent and feedback use cases on an in-memory SQLite database: the default local set-up runs them too."""
from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from sqlalchemy import select, update

from services.contacts import consent, feedback, service
from services.contacts.models import ConsentChange, Contact

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)


def _contact(rt, email: str, **values) -> uuid.UUID:
    contact = service.create_contact(rt.uow(), {"email": email})
    if values:
        with rt.session_factory() as s, s.begin():
            s.execute(update(Contact).where(Contact.id == contact.id).values(**values))
    return contact.id


def test_a_late_older_grant_stays_history_and_the_withdrawal_stays_current(runtime):
    contact_id = _contact(runtime, "ann@example.com")
    withdrawal = {"channel": "sms", "purpose": "marketing", "status": "withdrawn", "source": "call-center",
                  "occurred_at": T0}
    grant = {**withdrawal, "status": "granted", "source": "import", "text_version": "v2",
             "occurred_at": T0 - timedelta(days=3)}
    first = consent.record_consent_changes(runtime.uow(), contact_id, [withdrawal], recorded_by="k1")
    second = consent.record_consent_changes(runtime.uow(), contact_id, [grant], recorded_by="k2")
    assert second["consents"]["sms:marketing"]["status"] == "withdrawn"
    assert (first["version"], second["version"]) == (2, 2)
    with runtime.session_factory() as s:
        assert [(c.status, c.current, c.recorded_by) for c in s.scalars(select(ConsentChange).order_by(ConsentChange.seq))] \
            == [("withdrawn", True, "k1"), ("granted", False, "k2")]
    page = consent.list_consent_changes(runtime.uow(read_only=True), contact_id, limit=10, cursor=None, channel="sms")
    assert [c.status for c in page["items"]] == ["granted", "withdrawn"]


def test_figures_for_a_tag_on_sqlite(runtime):
    vip = _contact(runtime, "ann@example.com", tags=["vip"])
    other = _contact(runtime, "bob@example.com", tags=["vipx"])
    for contact_id, score in ((vip, 10), (vip, 6), (vip, 8), (other, 0)):
        feedback.record_feedback(runtime.uow(), contact_id, {"kind": "nps", "score": score, "occurred_at": T0},
                                 recorded_by="k")
    figures = feedback.feedback_figures(runtime.uow(read_only=True), start=date(2026, 3, 10), end=date(2026, 3, 10),
                                        segment="vip")
    assert figures["nps"] == {"score": Decimal("0.0"), "responses": 3, "promoters": 1, "passives": 1,
                              "detractors": 1}
    everyone = feedback.feedback_figures(runtime.uow(read_only=True))
    assert everyone["nps"]["score"] == Decimal("-25.0") and everyone["csat"]["average"] is None
