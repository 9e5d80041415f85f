"""`crm worker <svc>`: the outbox relay, the event consumer, the retention purge and the service's own background
jobs in one process, with /healthz, /readyz and /metrics on a port of their own (CRM_WORKER_HOST:CRM_WORKER_PORT)."""
from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Mapping

from .broker import Bindings
from .consumer import Consumer, Handler, InboxDispatcher
from .outbox import OutboxRelay, OutboxStore
from .retention import RetentionPurge
from .runtime import Runtime
from .worker_http import OpsServer
from .worker_metrics import OutboxBacklog, QueueDepths, WorkerMetrics

log = logging.getLogger("crm.worker")

NOT_CONNECTED = "not connected to the broker"

# A service's background job: runs until the event is set, surviving its own failures (a dead thread ends the process).
BackgroundJob = Callable[[threading.Event], None]


class Worker:
    """Runs the relay, the consumer, the retention purge and each background job on a thread of its own.

    `jobs` (name -> callable taking the stop event) is how a service adds work of its own, e.g. the contacts
    imports; each shows in /healthz under its name.
    """

    def __init__(self, runtime: Runtime, handlers: dict[str, Handler], bindings: Bindings, *,
                 jobs: Mapping[str, BackgroundJob] | None = None):
        s = runtime.settings
        self.runtime = runtime
        self.stop_event = threading.Event()
        self.metrics = WorkerMetrics(s.service)
        self.queue_depths = QueueDepths(s.service, s.amqp_url)
        self.metrics.watch(OutboxBacklog(s.service, runtime.session_factory, runtime.outbox_model))
        self.metrics.watch(self.queue_depths)
        self.relay = OutboxRelay(
            OutboxStore(runtime.session_factory, runtime.outbox_model, lease_seconds=s.relay_lease_seconds),
            s.amqp_url, retry_delays=s.retry_delays, batch_size=s.relay_batch_size, poll_interval=s.relay_poll_interval,
            database_url=s.database_url, metrics=self.metrics,
        )
        dispatcher = InboxDispatcher(lambda **kw: runtime.uow(**kw), runtime.inbox_model, handlers)
        self.consumer = Consumer(s.service, s.amqp_url, dispatcher, bindings=bindings, retry_delays=s.retry_delays,
                                 prefetch=s.prefetch, batch_size=s.consumer_batch_size,
                                 batch_linger=s.consumer_batch_linger, metrics=self.metrics) \
            if handlers else None
        self.retention = RetentionPurge(runtime.session_factory, runtime.outbox_model, runtime.inbox_model,
                                        retention_days=s.retention_days)
        self.jobs = dict(jobs or {})
        self.ops: OpsServer | None = None
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the relay, consumer, retention and background job threads."""
        targets = [("relay", self.relay.run)] + ([("consumer", self.consumer.run)] if self.consumer else []) \
            + [("retention", self.retention.run)] + list(self.jobs.items())
        for name, target in targets:
            t = threading.Thread(target=target, args=(self.stop_event,), name=f"{self.runtime.settings.service}-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def serve_ops(self, host: str | None = None, port: int | None = None) -> int:
        """Serve /healthz, /readyz and /metrics (CRM_WORKER_HOST/PORT unless given; port 0: any); returns the port."""
        s = self.runtime.settings
        self.ops = OpsServer(s.service, liveness=self.threads_alive, readiness=self.readiness_checks(),
                             registry=self.metrics.registry, host=s.worker_host if host is None else host,
                             port=s.worker_port if port is None else port)
        return self.ops.start()

    def threads_alive(self) -> dict[str, bool]:
        """Each loop's thread by name (relay, consumer, retention, the jobs) and whether it runs."""
        prefix = f"{self.runtime.settings.service}-"
        return {t.name.removeprefix(prefix): t.is_alive() for t in self._threads}

    def readiness_checks(self) -> dict:
        """/readyz: the database answers, and the relay and consumer are connected to the broker."""
        def connected(loop):
            return lambda: None if loop.connected else NOT_CONNECTED

        def database():
            self.runtime.check_database()

        checks = {"database": database, "relay": connected(self.relay)}
        if self.consumer is not None:
            checks["consumer"] = connected(self.consumer)
        return checks

    def stop(self, timeout: float = 10.0) -> None:
        """Ask every loop to finish and wait for them; close the ops port."""
        self.stop_event.set()
        for t in self._threads:
            t.join(timeout)
        if self.ops is not None:
            self.ops.stop()

    def run_forever(self) -> None:
        """Run until SIGTERM or SIGINT."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop_event.set())
        self.start()
        s = self.runtime.settings
        try:
            self.serve_ops()
        except OSError as exc:
            # Events matter more than probes: keep working, and say loudly why the port is missing (two
            # replicas of one worker on one host share the default port; give each its own CRM_WORKER_PORT).
            log.error("cannot serve /healthz, /readyz and /metrics on %s:%d (%s); set CRM_WORKER_PORT to a free "
                      "port. The worker runs on without them.", s.worker_host, s.worker_port, exc,
                      extra={"event": "worker.ops_unavailable"})
        log.info("worker started", extra={"event": "worker.started"})
        while not self.stop_event.wait(1.0):
            if not all(t.is_alive() for t in self._threads):
                log.error("a worker thread died; exiting so the supervisor restarts the process")
                break
        self.stop()
