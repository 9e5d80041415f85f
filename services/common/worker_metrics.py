"""A worker's Prometheus metrics: counters its loops increment, and gauges read from PostgreSQL/RabbitMQ at scrape time."""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Iterable
from datetime import datetime

import pika
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from .broker import connection_parameters, dlq_name, queue_name
from .catalog import CATALOG
from .db import utcnow

log = logging.getLogger("crm.worker.metrics")

# Deliveries per consumer batch (at most CRM_CONSUMER_BATCH_SIZE) and rows per relay claim (CRM_RELAY_BATCH_SIZE).
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
# How long a scrape reuses the queue depths it read from the broker (a passive declare per queue).
QUEUE_DEPTH_CACHE_SECONDS = 5.0
# A label for an event type outside the catalog (a malformed delivery), so a bad publisher cannot mint series.
UNKNOWN_TYPE = "unknown"


def _event_type(event_type: str | bytes | None) -> str:
    if isinstance(event_type, bytes):
        event_type = event_type.decode("utf-8", "replace")
    return event_type if event_type in CATALOG else UNKNOWN_TYPE


class WorkerMetrics:
    """The registry of one worker process (not the global one), and what its relay and consumer report into it."""

    def __init__(self, service: str):
        self.service = service
        self.registry = CollectorRegistry()
        labels = ["service", "event_type"]
        self.handled = Counter("crm_worker_events_handled_total", "Events whose handler committed its effect.",
                               labels, registry=self.registry)
        self.duplicates = Counter("crm_worker_events_duplicate_total",
                                  "Deliveries of events handled before (absorbed by the inbox, no effect).",
                                  labels, registry=self.registry)
        self.failed = Counter("crm_worker_events_failed_total",
                              "Events whose handler failed (each attempt; sent to a retry queue or the DLQ).",
                              labels, registry=self.registry)
        self.dead_lettered = Counter("crm_worker_events_dead_lettered_total",
                                     "Deliveries sent to the dead-letter queue.", labels, registry=self.registry)
        self.batch_size = Histogram("crm_worker_batch_size",
                                    "Deliveries per consumer batch (loop=consumer), rows per relay claim (loop=relay).",
                                    ["service", "loop"], buckets=BATCH_BUCKETS, registry=self.registry)
        self.published = Counter("crm_worker_outbox_published_total", "Outbox rows published and confirmed.",
                                 ["service"], registry=self.registry)
        self.nacked = Counter("crm_worker_outbox_nacked_total", "Outbox rows the broker refused (published again).",
                              ["service"], registry=self.registry)

    # -- what the loops report (cheap: one increment per event type and batch, not per event) ---------------
    def consumer_batch(self, size: int, outcomes: Iterable[tuple[str, bool | Exception]]) -> None:
        """A consumer batch of `size` deliveries and, per parsed event, (type, outcome) as the dispatcher gave it."""
        self.batch_size.labels(self.service, "consumer").observe(size)
        tallies = {True: Tally(), False: Tally(), None: Tally()}
        for event_type, outcome in outcomes:
            tallies[outcome if isinstance(outcome, bool) else None][event_type] += 1
        for counter, key in ((self.handled, True), (self.duplicates, False), (self.failed, None)):
            for event_type, n in tallies[key].items():
                counter.labels(self.service, _event_type(event_type)).inc(n)

    def event_dead_lettered(self, event_type: str | bytes | None) -> None:
        """One delivery went to the DLQ (its type as the message says, `unknown` outside the catalog)."""
        self.dead_lettered.labels(self.service, _event_type(event_type)).inc()

    def relay_batch(self, size: int) -> None:
        """The relay claimed `size` rows (claims that found nothing are not observed)."""
        if size:
            self.batch_size.labels(self.service, "relay").observe(size)

    def outbox_confirmed(self, acked: int, nacked: int) -> None:
        """The broker confirmed `acked` rows and refused `nacked`."""
        if acked:
            self.published.labels(self.service).inc(acked)
        if nacked:
            self.nacked.labels(self.service).inc(nacked)

    def watch(self, collector: Collector) -> None:
        """Add a collector read at every scrape."""
        self.registry.register(collector)


class OutboxBacklog(Collector):
    """Unpublished outbox rows and the age of the oldest, read at scrape time (both through the partial index
    of unpublished rows, so history does not slow a scrape)."""

    def __init__(self, service: str, session_factory, outbox_model):
        self.service = service
        self._session_factory = session_factory
        self._model = outbox_model

    def describe(self):
        # Describing without collecting: registering must not query the database.
        return [GaugeMetricFamily("crm_worker_outbox_backlog", ""),
                GaugeMetricFamily("crm_worker_outbox_oldest_unpublished_age_seconds", "")]

    def collect(self):
        m = self._model
        try:
            with self._session_factory() as session:
                count = session.scalar(select(func.count()).select_from(m).where(m.published_at.is_(None)))
                oldest: datetime | None = session.scalar(
                    select(m.created_at).where(m.published_at.is_(None)).order_by(m.seq).limit(1))
        except Exception:  # noqa: BLE001 — a scrape must answer; /readyz reports the database
            log.warning("could not read the outbox backlog", exc_info=True)
            return
        backlog = GaugeMetricFamily("crm_worker_outbox_backlog", "Outbox rows not yet published.", labels=["service"])
        backlog.add_metric([self.service], count or 0)
        age = GaugeMetricFamily("crm_worker_outbox_oldest_unpublished_age_seconds",
                                "Seconds since the oldest unpublished outbox row was written (0 when none).",
                                labels=["service"])
        age.add_metric([self.service], max(0.0, (utcnow() - oldest).total_seconds()) if oldest else 0.0)
        yield backlog
        yield age


class QueueDepths(Collector):
    """Messages ready in the service's queue (consumer lag) and in its DLQ, by passive declares on a short-lived
    connection, cached for a few seconds so frequent scrapes do not each open one."""

    def __init__(self, service: str, amqp_url: str, *, cache_seconds: float = QUEUE_DEPTH_CACHE_SECONDS):
        self.service = service
        self.amqp_url = amqp_url
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._read_at: float | None = None
        self._depths: dict[str, int | None] = {}

    def describe(self):
        return [GaugeMetricFamily("crm_worker_queue_ready_messages", ""),
                GaugeMetricFamily("crm_worker_dlq_messages", "")]

    def depths(self) -> dict[str, int | None]:
        """queue name -> ready messages (None when it could not be read), at most `cache_seconds` old."""
        with self._lock:
            now = time.monotonic()
            if self._read_at is None or now - self._read_at >= self.cache_seconds:
                self._depths = self._read()
                self._read_at = time.monotonic()
            return dict(self._depths)

    def _read(self) -> dict[str, int | None]:
        names = (queue_name(self.service), dlq_name(self.service))
        depths: dict[str, int | None] = dict.fromkeys(names)
        try:
            conn = pika.BlockingConnection(connection_parameters(self.amqp_url))
        except Exception:  # noqa: BLE001 — broker unreachable: no sample (readiness says why)
            log.warning("could not read queue depths: broker unreachable", exc_info=True)
            return depths
        try:
            for name in names:
                # A passive declare of a missing queue closes the channel, so each gets its own.
                channel = conn.channel()
                try:
                    depths[name] = channel.queue_declare(name, passive=True).method.message_count
                    channel.close()
                except Exception:  # noqa: BLE001 — not declared yet (no consumer has run)
                    log.info("queue %s not readable", name, exc_info=True)
        finally:
            if conn.is_open:
                conn.close()
        return depths

    def collect(self):
        depths = self.depths()
        for metric, name, doc in (
                ("crm_worker_queue_ready_messages", queue_name(self.service),
                 "Messages ready in the service's queue, not yet delivered to a consumer (consumer lag)."),
                ("crm_worker_dlq_messages", dlq_name(self.service), "Messages in the service's dead-letter queue.")):
            if depths.get(name) is not None:
                family = GaugeMetricFamily(metric, doc, labels=["service", "queue"])
                family.add_metric([self.service, name], depths[name])
                yield family
