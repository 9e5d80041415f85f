"""DictDump answers exactly what marshmallow's own Schema.dump answers, for the contact record's schemas."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from types import SimpleNamespace

import pytest

from services.common.schemas import DictDump
from services.contacts.schemas import ContactDetailSchema, ContactPageSchema, ContactSchema

T = datetime(2026, 5, 2, 9, 30, 15, 123456, tzinfo=timezone.utc)


def _record(**changes) -> dict:
    record = {
        "seq": 7, "id": uuid.UUID(int=1), "email": "ada@engines.example", "email_normalized": "ada@engines.example",
        "first_name": "Ada", "last_name": None, "company": "Analytical Engines", "job_title": "", "phone": None,
        "origin_lead_id": None, "account_id": uuid.UUID(int=2), "tags": ["engines", "vip"],
        "attributes": {"tier": "gold", "score": 3, "since": "2026-01-01"}, "consents": {},
        "status": "active", "terminated_at": None, "created_at": T, "updated_at": T + timedelta(hours=2),
        "version": 3,
        "purchases": {"count": 3, "first_purchase_at": T, "last_purchase_at": None, "total_spend": [
            {"currency": "EUR", "amount": Decimal("140.49"), "count": 2, "returned": Decimal("0"),
             "net": Decimal("140.4900"), "margin": Decimal("-1.23456"), "discount": Decimal("0.00005")},
            {"currency": "USD", "amount": Decimal("80"), "count": 1, "returned": Decimal("1E+2"),
             "net": Decimal("-20"), "margin": Decimal("0"), "discount": Decimal("0")}]},
        "analytics": {"currency": "EUR", "snapshot_id": uuid.UUID(int=3), "as_of": T.astimezone(timezone(timedelta(hours=2))),
                      "abc_class": "A", "recency_score": 5, "frequency_score": None, "monetary_score": 4,
                      "rfm_segment": "champions", "clv": Decimal("300.0000"), "predicted_margin": None,
                      "historical_margin": Decimal("40.12345"), "cost_to_serve": Decimal("5"),
                      "current_profit": Decimal("-35.5"), "quadrant": "best", "pyramid_level": "top", "stage": "loyal"},
    }
    record.update(changes)
    return record


def _marshmallow(schema, obj, **kw):
    """The same schema's dump with DictDump out of the way (nested schemas included)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DictDump, "_plan", lambda self: None)
        return schema.dump(obj, **kw)


@pytest.mark.parametrize("record", [
    _record(),
    _record(analytics=None, purchases={"count": 0, "first_purchase_at": None, "last_purchase_at": None,
                                       "total_spend": []}),
    {key: value for key, value in _record().items() if key not in ("tags", "analytics", "version", "phone")},
    _record(terminated_at=T, status="terminated", tags=[], consents={"email:marketing": {"status": "granted"}}),
    _record(purchases={"first_purchase_at": T, "total_spend": [{"currency": "EUR"}]}),  # "count" is no dict attribute
], ids=["full", "no-analytics", "keys-missing", "terminated", "partial-nested"])
def test_a_dict_dumps_byte_for_byte_as_marshmallow_dumps_it(record):
    schema = ContactDetailSchema()
    fast = schema.dump(record)
    assert json.dumps(fast) == json.dumps(_marshmallow(schema, record))
    assert schema._plan() is not None  # the fast path was the one taken


def test_lists_objects_and_pages_dump_as_before():
    records = [_record(), _record(id=uuid.UUID(int=9), first_name="Bob")]
    assert json.dumps(ContactSchema(many=True).dump(records)) == \
        json.dumps(_marshmallow(ContactSchema(many=True), records))
    page = {"items": records, "next_cursor": None}
    assert json.dumps(ContactPageSchema().dump(page)) == json.dumps(_marshmallow(ContactPageSchema(), page))
    as_object = SimpleNamespace(**_record())
    assert json.dumps(ContactSchema().dump(as_object)) == json.dumps(_marshmallow(ContactSchema(), as_object))
    assert ContactSchema().dump(as_object)["email"] == "ada@engines.example"


class _Mapping(SimpleNamespace):
    """An object marshmallow reads by key first (it has __getitem__)."""

    def __getitem__(self, key):
        return getattr(self, key)


def test_objects_dump_byte_for_byte_through_the_fast_path_and_odd_ones_the_ordinary_way():
    from marshmallow import Schema

    from services.contacts.models import Contact

    row = {key: value for key, value in _record().items() if key in Contact.__table__.columns}
    mapped = Contact(**row)  # a mapped object, as a list page holds them
    lacking = SimpleNamespace(**{k: v for k, v in _record().items() if k not in ("tags", "phone")})
    keyed = _Mapping(**_record())
    expected = {name: json.dumps(_marshmallow(ContactSchema(), obj))
                for name, obj in (("mapped", mapped), ("lacking", lacking), ("keyed", keyed))}
    ordinary = []
    with pytest.MonkeyPatch.context() as patch:
        original = Schema.dump
        patch.setattr(Schema, "dump", lambda self, obj, **kw: ordinary.append(type(obj)) or original(self, obj, **kw))
        assert json.dumps(ContactSchema().dump(mapped)) == expected["mapped"]
        assert json.dumps(ContactSchema().dump(lacking)) == expected["lacking"]  # missing attributes: left out
        assert ordinary == [], "objects without __getitem__ take the fast path"
        assert json.dumps(ContactSchema().dump(keyed)) == expected["keyed"]
        assert ordinary == [_Mapping], "an object with __getitem__ goes the ordinary way"
        page = {"items": [mapped, _record(), lacking], "next_cursor": "c"}
        fast_page = json.dumps(ContactPageSchema().dump(page))
    assert fast_page == json.dumps(_marshmallow(ContactPageSchema(), page))
    assert "phone" not in json.loads(expected["lacking"]) and json.loads(expected["mapped"])["tags"] == ["engines", "vip"]
