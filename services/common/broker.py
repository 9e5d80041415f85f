"""RabbitMQ topology and connections: one topic exchange, a quorum queue per service, retries and a DLQ."""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import pika

from .catalog import EXCHANGE

# Bindings: service -> the event types its queue takes. The suite registry derives them from each service's
# handlers and hands the whole map to every worker, so any worker can declare the whole topology before it
# publishes: an event published before its consumer's queue exists would otherwise be dropped by the broker.
Bindings = Mapping[str, Iterable[str]]

ATTEMPT_HEADER = "x-crm-attempt"
ERROR_HEADER = "x-crm-error"


def queue_name(service: str) -> str:
    """The durable quorum queue a service consumes from."""
    return f"crm.{service}"


def dlq_name(service: str) -> str:
    """The dead-letter queue of a service."""
    return f"crm.{service}.dlq"


def retry_queue_name(service: str, delay: float) -> str:
    """The delay queue for one retry step; named by its delay so a changed setting never clashes."""
    return f"crm.{service}.retry.{int(delay * 1000)}ms"


def connection_parameters(amqp_url: str, *, heartbeat: int = 30) -> pika.URLParameters:
    """Connection parameters with a heartbeat and short connect timeouts."""
    params = pika.URLParameters(amqp_url)
    params.heartbeat = heartbeat
    params.blocked_connection_timeout = 60
    params.socket_timeout = 5
    params.connection_attempts = 1
    return params


def declare_topology(channel, bindings: Bindings, retry_delays: tuple[float, ...]) -> None:
    """Declare the exchange and every service's queues, bindings, delay queues and DLQ (idempotent)."""
    channel.exchange_declare(EXCHANGE, exchange_type="topic", durable=True)
    for service, types in bindings.items():
        main = queue_name(service)
        channel.queue_declare(main, durable=True, arguments={"x-queue-type": "quorum"})
        for event_type in types:
            channel.queue_bind(main, EXCHANGE, routing_key=event_type)
        channel.queue_declare(dlq_name(service), durable=True, arguments={"x-queue-type": "quorum"})
        for delay in retry_delays:
            # A delay queue holds a failed message for `delay` seconds, then dead-letters it back to the
            # service queue through the default exchange.
            channel.queue_declare(
                retry_queue_name(service, delay), durable=True,
                arguments={
                    "x-message-ttl": int(delay * 1000),
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": main,
                },
            )


def ping(amqp_url: str) -> None:
    """Open and close a connection; raises when the broker is unreachable."""
    conn = pika.BlockingConnection(connection_parameters(amqp_url))
    conn.close()
