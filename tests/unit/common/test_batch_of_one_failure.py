"""A batch of one that fails: its failure is returned once, nothing it did is kept (SQLite)."""
from __future__ import annotations

import uuid

from sqlalchemy import func, select

from services.common.catalog import make_event
from services.common.consumer import InboxDispatcher
from services.common.uow import UnitOfWork
from tests.support.messaging_tables import Inbox, Outbox


def _event():
    return make_event("crm.lead.created", {"lead_id": str(uuid.uuid4()), "email": "a@example.com", "score": 1},
                      source="/tests")


def test_a_failing_batch_of_one_returns_its_exception_after_one_attempt_and_keeps_nothing(factory):
    calls = []

    def handler(uow, event):
        calls.append(event.id)
        uow.add_event("crm.lead.created", {"lead_id": str(uuid.uuid4()), "email": "b@example.com", "score": 2})
        raise ValueError("the handler fails")

    dispatcher = InboxDispatcher(lambda **kw: UnitOfWork(factory, Outbox, source="/tests", **kw), Inbox,
                                 {"crm.lead.created": handler})
    event = _event()
    [outcome] = dispatcher.dispatch_batch([event])
    assert isinstance(outcome, ValueError) and str(outcome) == "the handler fails"
    assert calls == [event.id]  # not handled a second time on its own: the batch was already its own
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(Inbox)) == 0  # so a redelivery handles it again
        assert s.scalar(select(func.count()).select_from(Outbox)) == 0


def test_the_same_event_succeeds_on_redelivery_once_the_handler_does(factory):
    failing = [True]

    def handler(uow, event):
        if failing[0]:
            raise ValueError("not yet")

    dispatcher = InboxDispatcher(lambda **kw: UnitOfWork(factory, Outbox, source="/tests", **kw), Inbox,
                                 {"crm.lead.created": handler})
    event = _event()
    assert isinstance(dispatcher.dispatch_batch([event])[0], ValueError)
    failing[0] = False
    assert dispatcher.dispatch_batch([event]) == [True]
    assert dispatcher.dispatch_batch([event]) == [False]  # the inbox has it now
