"""The event catalog: every integration event type with the marshmallow schema of its `data`.

Adding an optional field is compatible; renaming or removing one makes a new type (`...v2`).
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from crm_plugins.types import SUBJECT_KINDS
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

SPEC_VERSION = "1.0"
EXCHANGE = "crm.events"


class _EventData(Schema):
    class Meta:
        # Unknown fields are kept so an older consumer accepts a newer, compatible publisher.
        unknown = "include"


class LeadConvertedData(_EventData):
    lead_id = fields.UUID(required=True)
    email = fields.Email(required=True)
    first_name = fields.String(allow_none=True, load_default=None)
    last_name = fields.String(allow_none=True, load_default=None)
    company = fields.String(allow_none=True, load_default=None)
    job_title = fields.String(allow_none=True, load_default=None)
    phone = fields.String(allow_none=True, load_default=None)
    source = fields.String(allow_none=True, load_default=None)
    score = fields.Integer(allow_none=True, load_default=None)


class ContactCreatedData(_EventData):
    contact_id = fields.UUID(required=True)
    email = fields.Email(required=True)
    lead_id = fields.UUID(allow_none=True, load_default=None)
    # True when the contact already existed and the lead was matched to it.
    matched = fields.Boolean(load_default=False)


class LeadCreatedData(_EventData):
    lead_id = fields.UUID(required=True)
    email = fields.Email(required=True)
    source = fields.String(allow_none=True, load_default=None)
    score = fields.Integer(required=True)


class ContactUpdatedData(_EventData):
    contact_id = fields.UUID(required=True)
    changed = fields.List(fields.String(), required=True)
    # The contact's version after the change, so a projection can ignore an update that arrives late.
    version = fields.Integer(allow_none=True, load_default=None)


_MONEY = dict(as_string=True, places=None, allow_nan=False)
_CURRENCY = validate.Regexp(r"^[A-Z]{3}$")


class MemberEnrolledData(_EventData):
    member_id = fields.UUID(required=True)
    contact_id = fields.UUID(required=True)
    program_id = fields.UUID(required=True)


class MemberFrozenData(_EventData):
    """A membership became frozen: its contact was terminated, a terminated contact enrolled, or a merge froze it."""

    member_id = fields.UUID(required=True)
    contact_id = fields.UUID(required=True)
    program_id = fields.UUID(required=True)
    frozen_at = fields.AwareDateTime(required=True)  # the termination's time, not the moment loyalty froze it
    reason = fields.String(allow_none=True, load_default=None)  # the termination's reason; None once erased


class PurchaseRecordedData(_EventData):
    purchase_id = fields.UUID(required=True)
    member_id = fields.UUID(required=True)
    contact_id = fields.UUID(required=True)
    program_id = fields.UUID(required=True)
    # Money travels as a decimal string with its currency code, never as a float.
    amount = fields.Decimal(required=True, **_MONEY)
    currency = fields.String(required=True, validate=_CURRENCY)
    occurred_at = fields.AwareDateTime(required=True)
    external_id = fields.String(allow_none=True, load_default=None)
    # The points the purchase earned (the sum of every plugin's awards).
    points = fields.Integer(allow_none=True, load_default=None)
    # What the business made on it (given, or from the program's margin rate) and what the buyer was let off;
    # None when not known.
    margin = fields.Decimal(allow_none=True, load_default=None, **_MONEY)
    discount = fields.Decimal(allow_none=True, load_default=None, **_MONEY)
    # The coupon the purchase was bought with (as the caller gave it), or None.
    coupon_code = fields.String(allow_none=True, load_default=None)


class PurchaseReturnedData(_EventData):
    """Part or all of a purchase was given back; the points it earned for that part were taken back."""

    return_id = fields.UUID(required=True)
    purchase_id = fields.UUID(required=True)
    member_id = fields.UUID(required=True)
    contact_id = fields.UUID(required=True)
    program_id = fields.UUID(required=True)
    amount = fields.Decimal(required=True, **_MONEY)
    currency = fields.String(required=True, validate=_CURRENCY)
    occurred_at = fields.AwareDateTime(required=True)
    margin = fields.Decimal(allow_none=True, load_default=None, **_MONEY)  # the margin given back with it
    points = fields.Integer(allow_none=True, load_default=None)  # taken back (crm.points.reclaimed)
    reason = fields.String(allow_none=True, load_default=None)


class PointsEarnedData(_EventData):
    transaction_id = fields.UUID(required=True)
    member_id = fields.UUID(required=True)
    contact_id = fields.UUID(required=True)
    points = fields.Integer(required=True)
    balance = fields.Integer(required=True)
    purchase_id = fields.UUID(allow_none=True, load_default=None)
    program_id = fields.UUID(allow_none=True, load_default=None)
    lifetime_points = fields.Integer(allow_none=True, load_default=None)


class PointsRedeemedData(_EventData):
    transaction_id = fields.UUID(required=True)
    member_id = fields.UUID(required=True)
    contact_id = fields.UUID(required=True)
    points = fields.Integer(required=True)
    balance = fields.Integer(required=True)
    program_id = fields.UUID(allow_none=True, load_default=None)
    reason = fields.String(allow_none=True, load_default=None)


class PointsAdjustedData(_EventData):
    """A correction of a member's points: a manual adjustment or the reversal of an earlier entry."""

    transaction_id = fields.UUID(required=True)
    member_id = fields.UUID(required=True)
    contact_id = fields.UUID(required=True)
    program_id = fields.UUID(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(["adjust", "reverse"]))
    points = fields.Integer(required=True)  # signed
    balance = fields.Integer(required=True)
    lifetime_points = fields.Integer(required=True)
    reverses_id = fields.UUID(allow_none=True, load_default=None)
    reason = fields.String(allow_none=True, load_default=None)


class PointsReclaimedData(_EventData):
    """Points a purchase earned were taken back because part or all of it was returned."""

    transaction_id = fields.UUID(required=True)
    member_id = fields.UUID(required=True)
    contact_id = fields.UUID(required=True)
    program_id = fields.UUID(required=True)
    points = fields.Integer(required=True)  # taken back: a positive number
    balance = fields.Integer(required=True)
    lifetime_points = fields.Integer(required=True)
    purchase_id = fields.UUID(required=True)
    return_id = fields.UUID(required=True)


class PartnerCreatedData(_EventData):
    partner_id = fields.UUID(required=True)
    name = fields.String(required=True)
    type = fields.String(required=True)
    status = fields.String(required=True)


class ContractCreatedData(_EventData):
    contract_id = fields.UUID(required=True)
    partner_id = fields.UUID(required=True)
    terms_version = fields.Integer(required=True)


class ContractTermsChangedData(_EventData):
    contract_id = fields.UUID(required=True)
    partner_id = fields.UUID(required=True)
    version = fields.Integer(required=True)
    previous_version = fields.Integer(required=True)
    changed = fields.List(fields.String(), load_default=list)


# -- the customer record (issue 8) ----------------------------------------------------------------------------

class LeadTouchedData(_EventData):
    """An open lead was captured again (another form, another campaign): one more touch on its history."""

    lead_id = fields.UUID(required=True)
    touch_id = fields.UUID(required=True)
    source = fields.String(allow_none=True, load_default=None)
    occurred_at = fields.AwareDateTime(required=True)
    campaign = fields.String(allow_none=True, load_default=None)


class InteractionRecordedData(_EventData):
    """A call, meeting, e-mail, inquiry, complaint or note was recorded for a contact (its text stays in contacts)."""

    interaction_id = fields.UUID(required=True)
    contact_id = fields.UUID(required=True)
    type = fields.String(required=True)
    channel = fields.String(allow_none=True, load_default=None)
    direction = fields.String(allow_none=True, load_default=None)
    occurred_at = fields.AwareDateTime(required=True)
    category = fields.String(allow_none=True, load_default=None)  # complaints only


class MemberTierChangedData(_EventData):
    member_id = fields.UUID(required=True)
    contact_id = fields.UUID(required=True)
    program_id = fields.UUID(required=True)
    tier = fields.String(allow_none=True, load_default=None)
    previous_tier = fields.String(allow_none=True, load_default=None)
    occurred_at = fields.AwareDateTime(required=True)


class OfferSentData(_EventData):
    offer_id = fields.UUID(required=True)
    contact_id = fields.UUID(required=True)
    channel = fields.String(required=True)
    name = fields.String(allow_none=True, load_default=None)
    occurred_at = fields.AwareDateTime(required=True)


CONSENT_CHANNELS = ("email", "sms", "phone", "post", "push")
CONSENT_PURPOSES = ("marketing", "service")


class ConsentChangedData(_EventData):
    """A person granted or withdrew consent to be contacted on one channel for one purpose."""

    contact_id = fields.UUID(required=True)
    channel = fields.String(required=True, validate=validate.OneOf(CONSENT_CHANNELS))
    purpose = fields.String(required=True, validate=validate.OneOf(CONSENT_PURPOSES))
    status = fields.String(required=True, validate=validate.OneOf(["granted", "withdrawn"]))
    occurred_at = fields.AwareDateTime(required=True)
    source = fields.String(allow_none=True, load_default=None)
    text_version = fields.String(allow_none=True, load_default=None)
    # Whether it became the person's current consent: an older statement arriving late is history only.
    current = fields.Boolean(allow_none=True, load_default=None)


class FeedbackReceivedData(_EventData):
    feedback_id = fields.UUID(required=True)
    contact_id = fields.UUID(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(["nps", "csat"]))
    score = fields.Integer(required=True)
    occurred_at = fields.AwareDateTime(required=True)
    interaction_id = fields.UUID(allow_none=True, load_default=None)
    purchase_id = fields.UUID(allow_none=True, load_default=None)


class ContactMergedData(_EventData):
    """Two contacts were one person: `merged_id` is gone, every reference to it now names `survivor_id`."""

    survivor_id = fields.UUID(required=True)
    merged_id = fields.UUID(required=True)
    # Ids merged into `merged_id` before: they live on as `survivor_id` now too. A consumer re-points them all, so
    # the result is right whichever of two chained merges' events it handles first.
    previously_merged_ids = fields.List(fields.UUID(), load_default=list)


class ContactErasedData(_EventData):
    """Erase every piece of personal data about this person (GDPR art. 17); report with crm.erasure.completed.

    The e-mail is carried so a service can find what it keeps by address only (a lead never converted);
    the outbox row of this event is itself purged once every service has confirmed.
    """

    erasure_id = fields.UUID(required=True)
    contact_id = fields.UUID(required=True)
    email = fields.String(allow_none=True, load_default=None)
    lead_ids = fields.List(fields.UUID(), load_default=list)
    # Contacts merged into this one earlier: other services may still name the person by these ids.
    merged_ids = fields.List(fields.UUID(), load_default=list)


class ErasureCompletedData(_EventData):
    erasure_id = fields.UUID(required=True)
    contact_id = fields.UUID(required=True)
    service = fields.String(required=True)


class ContactStageChangedData(_EventData):
    """A refresh moved a contact to another lifecycle stage (prospect, new, general, repeater, loyal, lapsed)."""

    contact_id = fields.UUID(required=True)
    stage = fields.String(required=True)
    previous_stage = fields.String(allow_none=True, load_default=None)  # None: the contact's first stage
    source = fields.String(allow_none=True, load_default=None)  # "rules" or the plugin that decided
    refresh_id = fields.UUID(required=True)
    as_of = fields.AwareDateTime(required=True)


class SegmentMembershipData(_EventData):
    """A refresh found a contact newly inside (crm.segment.entered) or no longer inside (crm.segment.left) a segment."""

    segment_id = fields.UUID(required=True)
    contact_id = fields.UUID(required=True)
    refresh_id = fields.UUID(allow_none=True, load_default=None)
    occurred_at = fields.AwareDateTime(required=True)


PARTY_SIDES = ("internal", "partner")


class ProposalData(_EventData):
    """A proposal to change a contract's terms moved: submitted, countered (superseded by a counter-proposal),
    accepted (the terms version it created is `terms_version`), rejected or expired."""

    proposal_id = fields.UUID(required=True)
    contract_id = fields.UUID(required=True)
    partner_id = fields.UUID(required=True)
    base_version = fields.Integer(required=True)  # the terms version it was made against
    proposed_by = fields.String(required=True, validate=validate.OneOf(PARTY_SIDES))
    occurred_at = fields.AwareDateTime(required=True)
    changes = fields.Dict(keys=fields.String(), load_default=dict)  # term -> proposed value (JSON form)
    counter_proposal_id = fields.UUID(allow_none=True, load_default=None)  # crm.proposal.countered
    terms_version = fields.Integer(allow_none=True, load_default=None)  # crm.proposal.accepted
    reason = fields.String(allow_none=True, load_default=None)  # crm.proposal.rejected


class ContractPeriodData(_EventData):
    """A contract entered its notice period (expiring), reached its end (expired) or renewed itself (renewed,
    with the new terms version)."""

    contract_id = fields.UUID(required=True)
    partner_id = fields.UUID(required=True)
    version = fields.Integer(required=True)  # the terms version whose period this is about
    effective_to = fields.Date(allow_none=True, load_default=None)
    notice_deadline = fields.Date(allow_none=True, load_default=None)
    renewed_version = fields.Integer(allow_none=True, load_default=None)
    renewed_until = fields.Date(allow_none=True, load_default=None)
    occurred_at = fields.AwareDateTime(required=True)


class DeliveryRecordedData(_EventData):
    delivery_id = fields.UUID(required=True)
    partner_id = fields.UUID(required=True)
    contract_id = fields.UUID(allow_none=True, load_default=None)
    order_reference = fields.String(required=True)
    promised_on = fields.Date(required=True)
    delivered_on = fields.Date(allow_none=True, load_default=None)
    occurred_at = fields.AwareDateTime(required=True)


class DisputeData(_EventData):
    """A dispute was opened, changed state (investigating, resolved, escalated) or passed its SLA (overdue)."""

    dispute_id = fields.UUID(required=True)
    partner_id = fields.UUID(required=True)
    category = fields.String(required=True)
    status = fields.String(required=True)
    opened_by = fields.String(required=True, validate=validate.OneOf(PARTY_SIDES))
    amount = fields.Decimal(allow_none=True, load_default=None, **_MONEY)
    currency = fields.String(allow_none=True, load_default=None)
    contract_id = fields.UUID(allow_none=True, load_default=None)
    delivery_id = fields.UUID(allow_none=True, load_default=None)
    resolution = fields.String(allow_none=True, load_default=None)
    occurred_at = fields.AwareDateTime(required=True)


class PaymentRecordedData(_EventData):
    """An invoice payment recorded on a contact: when it was due and when (if yet) it was paid."""

    payment_id = fields.UUID(required=True)
    contact_id = fields.UUID(required=True)
    invoice_reference = fields.String(required=True)
    amount = fields.Decimal(required=True, **_MONEY)
    currency = fields.String(required=True, validate=_CURRENCY)
    due_on = fields.Date(required=True)
    paid_on = fields.Date(allow_none=True, load_default=None)
    occurred_at = fields.AwareDateTime(required=True)


class ContactFlaggedData(_EventData):
    """A fraud flag was recorded on a contact (`cleared` false) or cleared (`cleared` true)."""

    flag_id = fields.UUID(required=True)
    contact_id = fields.UUID(required=True)
    code = fields.String(required=True)
    cleared = fields.Boolean(load_default=False)
    occurred_at = fields.AwareDateTime(required=True)


class SubjectTerminatedData(_EventData):
    """An operator accepted a `terminate` recommendation: the contact or partner is terminated."""

    contact_id = fields.UUID(allow_none=True, load_default=None)
    partner_id = fields.UUID(allow_none=True, load_default=None)
    recommendation_id = fields.UUID(required=True)
    decision_id = fields.UUID(required=True)
    reason = fields.String(required=True)
    occurred_at = fields.AwareDateTime(required=True)

    @validates_schema
    def _one_subject(self, data, **_kw):
        named = [name for name in ("contact_id", "partner_id") if data.get(name) is not None]
        if len(named) != 1:
            message = "Name a contact or a partner, not both." if named else "Name the terminated contact or partner."
            raise ValidationError({name: [message] for name in ("contact_id", "partner_id")})


class TerminationFindingData(_EventData):
    plugin = fields.String(required=True)
    code = fields.String(required=True)
    severity = fields.String(required=True)
    strategy = fields.String(required=True)


class TerminationRecommendedData(_EventData):
    """Enabled termination policies flagged a customer or partner; an operator is to accept or dismiss it."""

    recommendation_id = fields.UUID(required=True)
    subject_kind = fields.String(required=True, validate=validate.OneOf(SUBJECT_KINDS))
    subject_id = fields.UUID(required=True)
    severity = fields.String(required=True)
    strategy = fields.String(required=True)
    findings = fields.List(fields.Nested(TerminationFindingData), required=True)
    occurred_at = fields.AwareDateTime(required=True)


class TerminationDecidedData(_EventData):
    """An operator accepted or dismissed a termination recommendation (who, and the reason, are on the record)."""

    recommendation_id = fields.UUID(required=True)
    decision_id = fields.UUID(required=True)
    subject_kind = fields.String(required=True, validate=validate.OneOf(SUBJECT_KINDS))
    subject_id = fields.UUID(required=True)
    decision = fields.String(required=True, validate=validate.OneOf(("accepted", "dismissed")))
    strategy = fields.String(required=True)
    occurred_at = fields.AwareDateTime(required=True)


CATALOG: dict[str, type[Schema]] = {
    "crm.lead.created": LeadCreatedData,
    "crm.lead.converted": LeadConvertedData,
    "crm.contact.created": ContactCreatedData,
    "crm.contact.updated": ContactUpdatedData,
    "crm.member.enrolled": MemberEnrolledData,
    "crm.member.frozen": MemberFrozenData,
    "crm.purchase.recorded": PurchaseRecordedData,
    "crm.points.earned": PointsEarnedData,
    "crm.points.redeemed": PointsRedeemedData,
    "crm.points.adjusted": PointsAdjustedData,
    "crm.purchase.returned": PurchaseReturnedData,
    "crm.points.reclaimed": PointsReclaimedData,
    "crm.partner.created": PartnerCreatedData,
    "crm.contract.created": ContractCreatedData,
    "crm.contract.terms_changed": ContractTermsChangedData,
    "crm.lead.touched": LeadTouchedData,
    "crm.member.tier_changed": MemberTierChangedData,
    "crm.offer.sent": OfferSentData,
    "crm.consent.changed": ConsentChangedData,
    "crm.feedback.received": FeedbackReceivedData,
    "crm.contact.merged": ContactMergedData,
    "crm.contact.erased": ContactErasedData,
    "crm.erasure.completed": ErasureCompletedData,
    "crm.interaction.recorded": InteractionRecordedData,
    "crm.contact.stage_changed": ContactStageChangedData,
    "crm.segment.entered": SegmentMembershipData,
    "crm.segment.left": SegmentMembershipData,
    "crm.proposal.submitted": ProposalData,
    "crm.proposal.accepted": ProposalData,
    "crm.proposal.rejected": ProposalData,
    "crm.proposal.countered": ProposalData,
    "crm.proposal.expired": ProposalData,
    "crm.contract.expiring": ContractPeriodData,
    "crm.contract.expired": ContractPeriodData,
    "crm.contract.renewed": ContractPeriodData,
    "crm.delivery.recorded": DeliveryRecordedData,
    "crm.dispute.opened": DisputeData,
    "crm.dispute.updated": DisputeData,
    "crm.dispute.overdue": DisputeData,
    "crm.payment.recorded": PaymentRecordedData,
    "crm.contact.flagged": ContactFlaggedData,
    "crm.contact.terminated": SubjectTerminatedData,
    "crm.partner.terminated": SubjectTerminatedData,
    "crm.termination.recommended": TerminationRecommendedData,
    "crm.termination.decided": TerminationDecidedData,
}


class UnknownEventType(KeyError):
    """The event type is not in the catalog."""


class EnvelopeSchema(Schema):
    """CloudEvents 1.0 structured JSON with the CRM extensions."""

    class Meta:
        unknown = RAISE

    specversion = fields.String(required=True, validate=validate.Equal(SPEC_VERSION))
    id = fields.UUID(required=True)
    source = fields.String(required=True)
    type = fields.String(required=True)
    time = fields.AwareDateTime(required=True)
    subject = fields.String(allow_none=True, load_default=None)
    datacontenttype = fields.String(load_default="application/json")
    data = fields.Dict(required=True)
    correlationid = fields.String(allow_none=True, load_default=None)
    causationid = fields.String(allow_none=True, load_default=None)


@dataclass(frozen=True)
class Event:
    """One integration event, validated against the catalog."""

    id: uuid.UUID
    type: str
    source: str
    time: datetime
    subject: str | None
    data: dict[str, Any]
    correlationid: str | None = None
    causationid: str | None = None
    # The JSON form of `data` when make_event has already produced it (so it is not dumped a second time).
    wire_data: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> str:
        """The CloudEvents structured-mode JSON body."""
        data = self.wire_data if self.wire_data is not None else _schema(self.type).dump(self.data)
        return json.dumps(
            {
                "specversion": SPEC_VERSION,
                "id": str(self.id),
                "source": self.source,
                "type": self.type,
                "time": self.time.isoformat(),
                "subject": self.subject,
                "datacontenttype": "application/json",
                "data": data,
                "correlationid": self.correlationid,
                "causationid": self.causationid,
            },
            separators=(",", ":"),
        )


# Built once, like the data schemas below: a consumer parses every delivery with it.
_ENVELOPE = EnvelopeSchema()

# One instance per event type, built on first use: building a marshmallow schema costs more than loading
# a small payload with it, and an instance holds no per-call state, so threads share it.
_SCHEMAS: dict[str, Schema] = {}


def _schema(event_type: str) -> Schema:
    schema = _SCHEMAS.get(event_type)
    if schema is None:
        try:
            schema = _SCHEMAS[event_type] = CATALOG[event_type]()
        except KeyError:
            raise UnknownEventType(event_type) from None
    return schema


def make_event(event_type: str, data: dict, *, source: str, subject: Any = None,
               correlationid: str | None = None, causationid: str | None = None) -> Event:
    """Validate `data` against the catalog and build an event; raises ValidationError or UnknownEventType."""
    schema = _schema(event_type)
    # Round-trip so what is stored is exactly what a consumer will validate; the JSON form is kept for to_json.
    wire = json.loads(json.dumps(schema.dump(data), default=str))
    loaded = schema.load(wire)
    defaulted = loaded.keys() - wire.keys()
    if defaulted:
        # Optional fields the publisher left out are published with their defaults, as a dump of `loaded` would.
        wire.update(schema.dump({name: loaded[name] for name in defaulted}))
    return Event(
        id=uuid.uuid4(), type=event_type, source=source, time=datetime.now(timezone.utc),
        subject=None if subject is None else str(subject), data=loaded,
        correlationid=correlationid, causationid=causationid, wire_data=wire,
    )


def parse_event(body: bytes | str) -> Event:
    """Parse and validate a received CloudEvent; raises ValidationError, UnknownEventType or ValueError."""
    try:
        raw = json.loads(body)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"body is not JSON: {exc}") from None
    envelope = _ENVELOPE.load(raw)
    data = _schema(envelope["type"]).load(envelope["data"])
    return Event(
        id=envelope["id"], type=envelope["type"], source=envelope["source"], time=envelope["time"],
        subject=envelope["subject"], data=data,
        correlationid=envelope["correlationid"], causationid=envelope["causationid"],
    )
