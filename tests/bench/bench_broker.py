"""The bare broker of the suite bench: pika publish-with-confirms and consume+ack on one quorum queue.

What RabbitMQ on this machine does for a client that does nothing else, so the suite's event pipeline can be
read as a fraction of it. Both loops are bounded in count (the messages sent) and time (`timeout`).
"""
from __future__ import annotations

import time

import pika


class _BareClient:
    """One SelectConnection running until its work is done or `timeout` passes; n messages per run."""

    n: int
    t0: float | None
    t1: float | None

    def _connect(self, params) -> None:
        self.conn = pika.SelectConnection(params, on_open_callback=self._opened,
                                          on_open_error_callback=lambda *_: self.conn.ioloop.stop())

    def run(self, timeout: float) -> float:
        self.conn.ioloop.call_later(timeout, self._close)
        self.conn.ioloop.start()
        return self.n / (self.t1 - self.t0) if self.t1 else 0.0

    def _close(self, *_):
        if self.conn.is_open:
            self.conn.close()
        self.conn.ioloop.stop()

    def _opened(self, conn):
        conn.channel(on_open_callback=self._channel)

    def _channel(self, ch):
        raise NotImplementedError


class BarePublisher(_BareClient):
    """Publish n messages to a quorum queue with publisher confirms, up to `window` unconfirmed at once."""

    def __init__(self, params, queue: str, n: int, body: bytes, window: int = 1000):
        self.queue, self.n, self.body, self.window = queue, n, body, window
        self.sent = self.confirmed = self.nacked = 0
        self.flags = bytearray(n + 1)
        self.low = 1
        self.t0 = self.t1 = None
        self.props = pika.BasicProperties(delivery_mode=2, content_type="application/cloudevents+json")
        self._connect(params)

    def _channel(self, ch):
        self.ch = ch
        ch.queue_declare(self.queue, durable=True, arguments={"x-queue-type": "quorum"}, callback=self._declared)

    def _declared(self, _):
        self.ch.confirm_delivery(self._on_confirm, callback=self._confirming)

    def _confirming(self, _):
        self.t0 = time.perf_counter()
        self._pump()

    def _pump(self):
        while self.sent < self.n and self.sent - self.confirmed < self.window:
            self.ch.basic_publish("", self.queue, self.body, self.props)
            self.sent += 1

    def _on_confirm(self, frame):
        method = frame.method
        if isinstance(method, pika.spec.Basic.Nack):
            self.nacked += 1
        tag = method.delivery_tag
        for t in (range(self.low, tag + 1) if method.multiple else (tag,)):
            if not self.flags[t]:
                self.flags[t] = 1
                self.confirmed += 1
        while self.low <= self.n and self.flags[self.low]:
            self.low += 1
        if self.confirmed >= self.n:
            self.t1 = time.perf_counter()
            self._close()
        else:
            self._pump()


class BareConsumer(_BareClient):
    """Consume and ack n messages one by one, with a prefetch like the service consumers'."""

    def __init__(self, params, queue: str, n: int, prefetch: int = 200):
        self.queue, self.n, self.prefetch = queue, n, prefetch
        self.count = 0
        self.t0 = self.t1 = None
        self._connect(params)

    def _channel(self, ch):
        self.ch = ch
        ch.basic_qos(prefetch_count=self.prefetch, callback=self._qos)

    def _qos(self, _):
        self.t0 = time.perf_counter()
        self.ch.basic_consume(self.queue, self._message)

    def _message(self, ch, method, props, body):
        ch.basic_ack(method.delivery_tag)
        self.count += 1
        if self.count >= self.n:
            self.t1 = time.perf_counter()
            self._close()
