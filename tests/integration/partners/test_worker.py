"""The partners worker on the real RabbitMQ: it relays the outbox and consumes only its own termination evidence."""
from __future__ import annotations

import pytest

from crm.registry import SUITE
from services.partners.handlers import HANDLERS
from tests.integration.common.messaging import Observer
from tests.support.suite import wait_until

from .conftest import Store

pytestmark = pytest.mark.integration


def test_the_worker_publishes_the_partner_events_and_marks_them_published(app, api, partners_settings, amqp_url):
    observer = Observer(amqp_url, "crm.#")
    worker = SUITE.create_worker("partners", partners_settings)
    # Its queue takes only the partners' own delivery and dispute events (termination evidence).
    assert set(HANDLERS) == {"crm.delivery.recorded", "crm.dispute.opened", "crm.dispute.updated"}
    assert worker.consumer is not None
    store = Store(worker.runtime)
    partner = api.partner()
    contract = api.contract(partner["id"])
    api.change_terms(contract["id"], 1, payment_terms_days=45)
    worker.start()
    try:
        published = observer.drain(3, timeout=30)
        assert [e["type"] for e in published] == ["crm.partner.created", "crm.contract.created",
                                                  "crm.contract.terms_changed"]
        assert published[2]["data"]["changed"] == ["payment_terms_days"]
        wait_until(lambda: worker.relay.store.unpublished_count() == 0, timeout=30, message="rows marked published")
        assert len(store.events()) == 3
    finally:
        worker.stop()
        observer.close()
        worker.runtime.engine.dispose()
