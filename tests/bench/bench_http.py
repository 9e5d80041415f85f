"""A small HTTP/1.1 load generator for the suite bench: raw keep-alive connections on asyncio.

Two loops, both bounded in count and time and aimed at 127.0.0.1 only:
- `closed_loop`: N connections send back to back; the figure is completed requests per second.
- `open_loop`: requests are sent on a fixed schedule whatever the server does, and each latency is measured
  from the request's SCHEDULED send time, so a stalled server cannot hide its queue (coordinated omission).

The client reports its own CPU use (process time / wall time) so a run can show the client was not the
bottleneck: the bench process does nothing else while a loop runs.
"""
from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

LOOPBACK = "127.0.0.1"


class ConnectionLost(Exception):
    """The server closed a keep-alive connection before answering (an idle timeout, not an error)."""


class Connection:
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.used = False

    async def open(self) -> None:
        # asyncio sets TCP_NODELAY on TCP transports, so small requests are not held back by Nagle.
        self.reader, self.writer = await asyncio.open_connection(LOOPBACK, self.port)
        self.used = False

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        """Send one prepared request; returns (status, body)."""
        self.writer.write(raw)
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise ConnectionLost() from exc
        self.used = True
        status = int(head[9:12])
        lower = head.lower()
        if b"transfer-encoding: chunked" in lower:
            body = await self._chunked()
        else:
            at = lower.find(b"content-length:")
            length = int(lower[at + 15:lower.index(b"\r\n", at)]) if at >= 0 else 0
            body = await self.reader.readexactly(length) if length else b""
        if b"connection: close" in lower:
            self.close()
        return status, body

    async def _chunked(self) -> bytes:
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)


async def send(conn: Connection, raw: bytes) -> tuple[int, bytes]:
    """One request; a connection the server closed while idle is reopened once (as any HTTP client does)."""
    if conn.writer is None:
        await conn.open()
    try:
        return await conn.request(raw)
    except ConnectionLost:
        conn.close()
        await conn.open()
        return await conn.request(raw)


def build_request(method: str, path: str, port: int, headers: dict[str, str] | None = None,
                  body: bytes = b"") -> bytes:
    """The bytes of one HTTP/1.1 request."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {LOOPBACK}:{port}", "Accept: application/json"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class ClosedLoopResult:
    rate: float  # completed requests per second in the measured window
    requests: int
    errors: int
    client_cpu: float  # the client's CPU seconds per wall second (1.0 = one core)
    statuses: dict[int, int] = field(default_factory=dict)
    sent: int = 0  # every request sent, the warm-up's included (to divide CPU measured around the whole loop)


async def _closed_loop(port: int, make_request, *, connections: int, warmup: float, duration: float,
                       max_requests: int) -> ClosedLoopResult:
    loop = asyncio.get_running_loop()
    conns = [Connection(port) for _ in range(connections)]
    for c in conns:
        await c.open()
    state = {"measuring": False, "done": 0, "errors": 0, "sent": 0}
    statuses: dict[int, int] = {}
    stop_at = loop.time() + warmup + duration

    async def worker(conn: Connection):
        while loop.time() < stop_at and state["sent"] < max_requests:
            state["sent"] += 1
            try:
                status, _ = await send(conn, make_request())
            except (ConnectionLost, ConnectionError, asyncio.IncompleteReadError):
                status = 0
                conn.close()
            if state["measuring"]:
                state["done"] += 1
                statuses[status] = statuses.get(status, 0) + 1
                if not 200 <= status < 300:
                    state["errors"] += 1

    tasks = [asyncio.create_task(worker(c)) for c in conns]
    await asyncio.sleep(warmup)
    state["measuring"] = True
    t0, cpu0 = time.perf_counter(), time.process_time()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=warmup + duration + 60)
    t1, cpu1 = time.perf_counter(), time.process_time()
    for c in conns:
        c.close()
    wall = t1 - t0
    return ClosedLoopResult(rate=state["done"] / wall, requests=state["done"], errors=state["errors"],
                            client_cpu=(cpu1 - cpu0) / wall, statuses=statuses, sent=state["sent"])


def closed_loop(port: int, make_request, *, connections: int = 16, warmup: float = 1.0, duration: float = 5.0,
                max_requests: int = 200_000) -> ClosedLoopResult:
    """Back-to-back requests from `connections` keep-alive connections; `make_request()` returns the bytes."""
    return asyncio.run(_closed_loop(port, make_request, connections=connections, warmup=warmup,
                                    duration=duration, max_requests=max_requests))


@dataclass
class OpenLoopResult:
    target_rate: float
    sent: int
    errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    client_cpu: float
    statuses: dict[int, int] = field(default_factory=dict)
    # With `kind_of`: per kind of request, (count, p50 ms, p99 ms, max ms), and the slowest requests as
    # (latency ms, kind, seconds from the step's start to when the request was due), slowest first.
    by_kind: dict[str, tuple[int, float, float, float]] = field(default_factory=dict)
    slowest: list[tuple[float, str, float]] = field(default_factory=list)
    started_at: float = 0.0  # wall-clock (epoch) time the first request was due: `slowest` counts from it

    def kinds_line(self) -> str:
        """One line: each kind's count and p50/p99/max, then where the slowest requests fell."""
        kinds = "; ".join(f"{k} n={n} p50 {p50:.1f} p99 {p99:.1f} max {mx:.0f}"
                          for k, (n, p50, p99, mx) in sorted(self.by_kind.items()))
        slow = ", ".join(f"{ms:.0f} ms {k} at {at:.2f} s" for ms, k, at in self.slowest)
        began = datetime.fromtimestamp(self.started_at, timezone.utc).strftime("%H:%M:%S.%f")[:-3]
        return f"{kinds} | slowest (from {began} UTC): {slow}"


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of `values`; inf when empty."""
    if not values:
        return math.inf
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


async def _open_loop(port: int, pick_request, *, rate: float, duration: float, max_connections: int,
                     grace: float, kind_of, slowest: int) -> OpenLoopResult:
    loop = asyncio.get_running_loop()
    count = max(1, int(rate * duration))
    idle: list[Connection] = []
    opened = 0
    freed = asyncio.Condition()
    answered: list[tuple[float, str | None, float]] = []  # (latency, kind or None, due from the start) per request
    statuses: dict[int, int] = {}
    errors = 0

    # Warm connections, so the first requests of a step do not pay for TCP set-up.
    for _ in range(min(max_connections, max(4, int(rate * 0.02) + 4))):
        c = Connection(port)
        await c.open()
        idle.append(c)
        opened += 1

    async def acquire() -> Connection:
        nonlocal opened
        if idle:
            return idle.pop()  # LIFO: the hottest connection, the least likely to have hit the idle timeout
        if opened < max_connections:
            opened += 1
            return Connection(port)
        async with freed:
            await freed.wait_for(lambda: bool(idle))
            return idle.pop()

    async def one(scheduled: float):
        nonlocal errors
        conn = await acquire()
        raw = pick_request()
        try:
            status, _ = await send(conn, raw)
        except (ConnectionLost, ConnectionError, asyncio.IncompleteReadError):
            status = 0
            conn.close()
        # The latency a user sees: from when the request was due, not from when the client got round to it.
        answered.append((loop.time() - scheduled, kind_of(raw) if kind_of else None, scheduled - start))
        statuses[status] = statuses.get(status, 0) + 1
        if not 200 <= status < 300:
            errors += 1
        idle.append(conn)
        async with freed:
            freed.notify()

    tasks = []
    lead = 0.05  # seconds from now to the first request's due time
    start, started_at = loop.time() + lead, time.time() + lead
    t0, cpu0 = time.perf_counter(), time.process_time()
    for i in range(count):
        scheduled = start + i / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    _done, pending = await asyncio.wait(tasks, timeout=grace)
    for task in pending:  # bounded in time: what did not finish within the grace period counts as failed
        task.cancel()
    t1, cpu1 = time.perf_counter(), time.process_time()
    for c in idle:
        c.close()
    failed = errors + len(pending)
    lat = [latency for latency, _kind, _due in answered] + [math.inf] * len(pending)
    timed = [entry for entry in answered if entry[1] is not None]  # with `kind_of` only
    by_kind: dict[str, list[float]] = {}
    for latency, kind, _due in timed:
        by_kind.setdefault(kind, []).append(latency)
    return OpenLoopResult(
        target_rate=rate, sent=count, errors=failed, p50_ms=percentile(lat, 50) * 1000,
        p99_ms=percentile(lat, 99) * 1000, max_ms=max(lat) * 1000, client_cpu=(cpu1 - cpu0) / (t1 - t0),
        statuses=statuses, started_at=started_at,
        by_kind={k: (len(v), percentile(v, 50) * 1000, percentile(v, 99) * 1000, max(v) * 1000)
                 for k, v in by_kind.items()},
        slowest=[(latency * 1000, kind, due) for latency, kind, due in sorted(timed, reverse=True)[:slowest]])


def open_loop(port: int, pick_request, *, rate: float, duration: float, max_connections: int = 256,
              grace: float = 10.0, kind_of=None, slowest: int = 8) -> OpenLoopResult:
    """Send `rate` requests per second for `duration` seconds on schedule; `pick_request()` returns the bytes.

    `kind_of(raw) -> str`, if given, names each request's kind, so the result also splits latencies by kind and
    lists the `slowest` requests with when they were due: a tail shared by every kind at one moment is a stall
    of the whole path, a tail of one kind is that kind's own cost.
    """
    return asyncio.run(_open_loop(port, pick_request, rate=rate, duration=duration, max_connections=max_connections,
                                  grace=grace, kind_of=kind_of, slowest=slowest))
