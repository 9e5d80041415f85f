"""Relay and consumer logic that needs no broker or database: confirm bookkeeping, addresses, arguments."""
from __future__ import annotations

import pytest
from pika.frame import Method
from pika.spec import Basic

from services.common.consumer import Consumer, InboxDispatcher
from services.common.outbox import OutboxRelay, PendingMessage, listen_dsn


class FakeStore:
    """The OutboxStore interface, recording what the relay marks and releases."""

    def __init__(self):
        self.marked: list[list[int]] = []
        self.released: list[list[int]] = []

    def mark_published(self, seqs):
        if seqs:
            self.marked.append(list(seqs))

    def release(self, seqs=None):
        if seqs is None or seqs:
            self.released.append(None if seqs is None else list(seqs))

    def claim(self, limit):
        return []


class FakeIoloop:
    """Records the callbacks the relay schedules instead of running them."""

    def __init__(self):
        self.scheduled: list[float] = []
        self.pending: dict[int, object] = {}

    def call_later(self, delay, callback):
        self.scheduled.append(delay)
        self.pending[len(self.scheduled)] = callback
        return len(self.scheduled)

    def remove_timeout(self, handle):
        self.pending.pop(handle, None)

    def run_pending(self):
        """Run the callbacks still scheduled, as the loop would once their delay passed."""
        callbacks, self.pending = list(self.pending.values()), {}
        for callback in callbacks:
            callback()


class FakeConnection:
    def __init__(self):
        self.ioloop = FakeIoloop()
        self.is_open = True


def _relay(batch_size=3) -> OutboxRelay:
    relay = OutboxRelay(FakeStore(), "amqp://localhost/", retry_delays=(1.0,), batch_size=batch_size)
    relay._conn = FakeConnection()
    return relay


def _confirm(kind, tag, multiple=False):
    return Method(1, kind(delivery_tag=tag, multiple=multiple))


def test_a_multiple_ack_confirms_every_earlier_tag_and_marks_them_in_one_update():
    relay = _relay(batch_size=10)
    relay._inflight = {1: 101, 2: 102, 3: 103, 4: 104}
    relay._on_confirm(_confirm(Basic.Ack, 3, multiple=True))
    assert relay._inflight == {4: 104}
    assert relay.store.marked == []  # not a full batch yet and more in flight: no UPDATE yet
    relay._on_confirm(_confirm(Basic.Ack, 4))
    assert relay.store.marked == [[101, 102, 103, 104]]
    assert relay.published == 4


def test_a_nacked_row_is_released_for_republishing_and_the_others_marked():
    relay = _relay(batch_size=10)
    relay._inflight = {7: 1, 8: 2, 9: 3}
    relay._on_confirm(_confirm(Basic.Ack, 7))
    relay._on_confirm(_confirm(Basic.Nack, 8))
    assert relay.store.marked == [[1]]
    assert relay.store.released == [[2]]
    assert relay._inflight == {9: 3}
    assert relay._conn.ioloop.scheduled[-1] == 0, "claims again at once to re-publish the nacked row"


def test_confirmed_rows_are_marked_soon_even_while_later_batches_stay_in_flight():
    # Under steady traffic the window may never be empty; a confirmed row left unmarked until its lease expired
    # would be published again (and, confirm after confirm, might never be marked at all).
    relay = _relay(batch_size=10)
    relay._inflight = {1: 101, 2: 102, 3: 103}
    relay._on_confirm(_confirm(Basic.Ack, 1))
    assert relay.store.marked == []
    relay._inflight[4] = 104  # the next batch went out before the rest were confirmed
    relay._on_confirm(_confirm(Basic.Ack, 2))
    relay._conn.ioloop.run_pending()
    assert relay.store.marked == [[101, 102]]
    assert relay._inflight == {3: 103, 4: 104}


def test_confirms_for_unknown_tags_change_nothing():
    relay = _relay()
    relay._inflight = {5: 50}
    relay._on_confirm(_confirm(Basic.Ack, 4))
    assert relay._inflight == {5: 50}
    assert relay.store.marked == []


def test_a_lost_connection_marks_what_was_confirmed_and_releases_the_rest():
    relay = _relay(batch_size=10)
    relay._inflight = {1: 11, 2: 12}
    relay._on_confirm(_confirm(Basic.Ack, 1))
    relay._reset_inflight()
    assert relay.store.marked == [[11]]
    assert relay.store.released == [None]
    assert relay._inflight == {} and relay._next_tag == 0


class OpenChannel:
    is_open = True

    def __init__(self):
        self.published = []

    def basic_publish(self, *args):
        self.published.append(args)


def test_a_wake_up_before_confirm_mode_publishes_nothing_until_the_broker_confirms_it():
    # Caught as a one-in-five stall: the listener's wake-up ran between the channel opening and Confirm.SelectOk,
    # so rows went out unconfirmed and every later delivery tag pointed at the wrong row.
    claims = []
    relay = _relay()
    relay.store.claim = lambda limit: claims.append(limit) or [PendingMessage(7, "e7", "crm.lead.created", b"{}")]
    relay._channel = OpenChannel()
    relay._on_wake()
    relay._conn.ioloop.run_pending()
    assert claims == [] and relay._channel.published == [] and relay._inflight == {}
    relay._on_confirm_ok(None)  # confirm mode is on: now it claims and publishes
    relay._conn.ioloop.run_pending()
    assert claims == [3] and len(relay._channel.published) == 1 and relay._inflight == {1: 7}


def test_a_claimed_row_unpacks_as_published():
    seq, event_id, event_type, payload = PendingMessage(1, "id", "crm.lead.created", "{}")
    assert (seq, event_type, payload) == (1, "crm.lead.created", "{}")


@pytest.mark.parametrize("url, expected", [
    ("postgresql+psycopg://postgres:secret@db:5432/leads", "postgresql://postgres:secret@db:5432/leads"),
    ("postgresql://postgres@127.0.0.1/leads", "postgresql://postgres@127.0.0.1/leads"),
    ("sqlite:///var/leads.db", None),
    (None, None),
])
def test_the_relay_listens_only_on_postgresql(url, expected):
    assert listen_dsn(url) == expected


def _handler(uow, event):
    pass


def test_a_batch_never_outgrows_the_prefetch():
    dispatcher = InboxDispatcher(lambda **kw: None, object, {"crm.lead.converted": _handler})
    consumer = Consumer("contacts", "amqp://localhost/", dispatcher, bindings={"contacts": ["crm.lead.converted"]},
                        retry_delays=(1.0,), prefetch=50, batch_size=200, batch_linger=0.01)
    assert consumer.batch_size == 50


def test_an_event_without_a_handler_is_an_error_naming_the_type():
    from services.common.catalog import make_event
    from services.common.consumer import NoHandler

    dispatcher = InboxDispatcher(lambda **kw: None, object, {"crm.lead.converted": _handler})
    event = make_event("crm.lead.created", {"lead_id": "6b1f4a56-3d59-4c1e-8b0e-8d0a2f3c9e11",
                                            "email": "a@example.com", "score": 1}, source="/tests")
    outcomes = dispatcher.dispatch_batch([event])
    assert isinstance(outcomes[0], NoHandler)
    assert "crm.lead.created" in str(outcomes[0])
