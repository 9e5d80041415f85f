"""Concurrent calls through the gateway: a few client threads, one keep-alive session each."""
from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from tests.support.fixtures import Client

T = TypeVar("T")
R = TypeVar("R")


class GatewayLoad:
    """Sends calls through the gateway from `clients` threads and counts the finished ones (`done`).

    Other threads read `done` to act at a point of the flow (a saboteur killing a worker at 30 %).
    """

    def __init__(self, base_url: str, key: str, clients: int):
        self.base_url = base_url
        self.key = key
        self.clients = clients
        self.done = 0
        self._lock = threading.Lock()
        self._local = threading.local()

    def client(self) -> Client:
        """This thread's client (a keep-alive session of its own)."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = Client(self.base_url, self.key)
        return client

    def run(self, items: Sequence[T], call: Callable[[Client, T], R]) -> list[R]:
        """`call(client, item)` for every item, concurrently; the results in the items' order.

        The first exception raised by a call is raised here once every call has finished or failed.
        """
        def one(item: T) -> R:
            result = call(self.client(), item)
            with self._lock:
                self.done += 1
            return result

        with ThreadPoolExecutor(self.clients) as pool:
            return list(pool.map(one, items))
