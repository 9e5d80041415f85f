"""`crm worker <svc>`: the outbox relay and the event consumer of one service in one process."""
from __future__ import annotations

import logging
import signal
import threading

from .broker import Bindings
from .consumer import Consumer, Handler, InboxDispatcher
from .outbox import OutboxRelay, OutboxStore
from .runtime import Runtime

log = logging.getLogger("crm.worker")


class Worker:
    """Runs the relay on a thread and the consumer on another until stopped."""

    def __init__(self, runtime: Runtime, handlers: dict[str, Handler], bindings: Bindings):
        s = runtime.settings
        self.runtime = runtime
        self.stop_event = threading.Event()
        self.relay = OutboxRelay(
            OutboxStore(runtime.session_factory, runtime.outbox_model, lease_seconds=s.relay_lease_seconds),
            s.amqp_url, retry_delays=s.retry_delays, batch_size=s.relay_batch_size, poll_interval=s.relay_poll_interval,
            database_url=s.database_url,
        )
        dispatcher = InboxDispatcher(lambda **kw: runtime.uow(**kw), runtime.inbox_model, handlers)
        self.consumer = Consumer(s.service, s.amqp_url, dispatcher, bindings=bindings, retry_delays=s.retry_delays,
                                 prefetch=s.prefetch, batch_size=s.consumer_batch_size,
                                 batch_linger=s.consumer_batch_linger) \
            if handlers else None
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the relay and consumer threads."""
        targets = [("relay", self.relay.run)] + ([("consumer", self.consumer.run)] if self.consumer else [])
        for name, target in targets:
            t = threading.Thread(target=target, args=(self.stop_event,), name=f"{self.runtime.settings.service}-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 10.0) -> None:
        """Ask both loops to finish and wait for them."""
        self.stop_event.set()
        for t in self._threads:
            t.join(timeout)

    def run_forever(self) -> None:
        """Run until SIGTERM or SIGINT."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop_event.set())
        self.start()
        log.info("worker started", extra={"event": "worker.started"})
        while not self.stop_event.wait(1.0):
            if not all(t.is_alive() for t in self._threads):
                log.error("a worker thread died; exiting so the supervisor restarts the process")
                break
        self.stop()
