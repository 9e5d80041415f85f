"""The loyalty service's event side: crm.contact.created enrols, once, through the inbox and the real broker."""
from __future__ import annotations

import uuid

import pika
import pytest
from sqlalchemy import select

from services.common.broker import connection_parameters, declare_topology
from services.common.catalog import EXCHANGE, make_event
from services.common.consumer import InboxDispatcher
from crm.registry import SUITE
from services.loyalty import handlers
from services.loyalty.models import Member, OutboxMessage
from tests.integration.loyalty.support import admin, count, events, purchase_body, rw
from tests.support.suite import wait_until

pytestmark = pytest.mark.integration

DEFAULT_PROGRAM_ID = "5b0c3f52-8d3e-4a7e-9b61-6c0d1f2a9e01"


def contact_created(contact_id: uuid.UUID):
    return make_event("crm.contact.created", {"contact_id": contact_id, "email": "ann@corp.example",
                                              "lead_id": None, "matched": False}, source="/services/contacts")


def dispatcher(app) -> InboxDispatcher:
    rt = app.extensions["crm.runtime"]
    return InboxDispatcher(lambda **kw: rt.uow(**kw), rt.inbox_model, handlers.HANDLERS)


def test_contact_created_delivered_twice_enrols_the_contact_once(loyalty):
    contact_id = uuid.uuid4()
    event = contact_created(contact_id)

    assert dispatcher(loyalty).dispatch(event) is True
    assert dispatcher(loyalty).dispatch(event) is False

    assert count(loyalty, Member, Member.contact_id == contact_id) == 1
    (enrolled,) = events(loyalty, "crm.member.enrolled")
    assert enrolled["data"]["contact_id"] == str(contact_id) and enrolled["causationid"] == str(event.id)


def test_a_second_contact_created_for_the_same_contact_does_nothing(loyalty):
    contact_id = uuid.uuid4()

    assert dispatcher(loyalty).dispatch(contact_created(contact_id)) is True
    assert dispatcher(loyalty).dispatch(contact_created(contact_id)) is True  # a new event id: handled, no effect

    assert count(loyalty, Member) == 1 and len(events(loyalty, "crm.member.enrolled")) == 1


def test_a_contact_who_already_joined_by_api_is_left_alone(loyalty):
    client = loyalty.test_client()
    contact_id = uuid.uuid4()
    member = client.post("/api/v1/loyalty/members", headers=rw(), json={"contact_id": str(contact_id)}).json

    dispatcher(loyalty).dispatch(contact_created(contact_id))

    (only,) = client.get(f"/api/v1/loyalty/members?contact_id={contact_id}", headers=rw()).json["items"]
    assert only["id"] == member["id"] and only["enrolled_via"] == "api"


def test_without_auto_enrolment_contact_created_enrols_nobody(loyalty):
    loyalty.test_client().patch(f"/api/v1/loyalty/programs/{DEFAULT_PROGRAM_ID}", headers=admin(),
                                json={"auto_enrol": False})

    assert dispatcher(loyalty).dispatch(contact_created(uuid.uuid4())) is True

    assert count(loyalty, Member) == 0 and events(loyalty, "crm.member.enrolled") == []


def test_the_worker_enrols_a_contact_from_the_broker_and_publishes_the_enrolment(loyalty, amqp_url):
    app = loyalty
    settings = app.extensions["crm.settings"]
    worker = SUITE.create_worker("loyalty", settings)
    contact_id = uuid.uuid4()
    conn = pika.BlockingConnection(connection_parameters(amqp_url))
    try:
        channel = conn.channel()
        declare_topology(channel, SUITE.bindings(), settings.retry_delays)  # so the event is queued even before the consumer binds
        enrolled = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(enrolled, EXCHANGE, routing_key="crm.member.enrolled")
        worker.start()
        channel.confirm_delivery()
        channel.basic_publish(EXCHANGE, "crm.contact.created", contact_created(contact_id).to_json(),
                              pika.BasicProperties(content_type="application/cloudevents+json", delivery_mode=2))

        client = app.test_client()
        member = wait_until(
            lambda: client.get(f"/api/v1/loyalty/members?contact_id={contact_id}", headers=rw()).json["items"],
            timeout=30, message="the member enrolled by the worker")
        assert member[0]["enrolled_via"] == "event"

        def published_enrolment():
            _method, _props, body = channel.basic_get(enrolled, auto_ack=True)
            return body

        body = wait_until(published_enrolment, timeout=30, message="crm.member.enrolled on the broker")
        assert str(contact_id).encode() in body

        def outbox_marked():
            with app.extensions["crm.runtime"].session_factory() as s:
                return all(s.scalars(select(OutboxMessage.published_at)).all())

        wait_until(outbox_marked, timeout=30, message="the relay marking the outbox row published")
    finally:
        worker.stop()
        conn.close()
        worker.runtime.engine.dispose()


def test_the_migrations_and_a_purchase_work_on_sqlite_too(tmp_path, service_app):
    url = f"sqlite:///{tmp_path / 'loyalty.db'}"
    SUITE.migrate("loyalty", url)
    client = service_app("loyalty", database_url=url).test_client()
    bought = client.post("/api/v1/loyalty/purchases", headers=rw(), json=purchase_body(external_id="r-1"))
    again = client.post("/api/v1/loyalty/purchases", headers=rw(), json=purchase_body(
        bought.json["contact_id"], external_id="r-1"))
    spent = client.post(f"/api/v1/loyalty/members/{bought.json['member_id']}/redemptions", headers=rw(),
                        json={"points": 50})

    assert (bought.status_code, again.status_code, spent.status_code) == (201, 200, 409)
    assert bought.json["points"] == 42 and again.json == bought.json
